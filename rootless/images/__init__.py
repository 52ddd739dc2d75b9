"""images: what makes and moves images. The build front end (containerfile.py turns the
text into typed stages and instructions, evaluate.py scopes ARGs and expands words,
dockerignore.py picks the context's files, all pure but the context walk); the build
itself (build.py runs the stages, build_copy.py turns COPY/ADD into tar payloads,
build_cache.py keys and remembers steps); commit.py and layer_tar.py turn a writable
layer into an image. Store, extract, registry, archives move here later."""
