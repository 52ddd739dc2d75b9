"""env: per-project environments. config.py parses rsbox.toml into an EnvConfig;
steps.py turns its [env]/[build] into the Containerfile the builder runs and records the
base in rsbox.lock; container.py keeps the project's one long-running container and
builds the `rsbox exec` that enters it; shims.py writes .rsbox/bin/TOOL for [expose];
enter.py is the lean entry of the shims and `rsbox shell` into a warm container."""
