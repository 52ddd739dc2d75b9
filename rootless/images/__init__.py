"""images: what makes and moves images; today the build front end (containerfile.py turns
the text into typed stages and instructions, evaluate.py scopes ARGs and expands words,
dockerignore.py picks the context's files, all pure but the context walk); store, extract,
registry, archives move here later."""
