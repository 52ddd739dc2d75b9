#!/bin/sh
# Set up rsbox on Debian 12 and run a first container, no network needed.
#
#   ./setup.sh            Debian packages (through sudo unless you are root), a venv in
#                         ./.venv, then the demo: import the host's busybox-static as an
#                         image and run a command in a rootless container
#   ./setup.sh packages   only the Debian packages (what CI does as root)
#   ./setup.sh venv       only the venv (no root needed)
set -eu
cd "$(dirname "$0")"

# What rsbox and its tests use. uidmap: newuidmap/newgidmap for the full id map;
# fuse3/libfuse3-dev/pkg-config/python3-dev/gcc: pyfuse3 builds from source, and rsbox's
# own C parts (setup.py: rsbox-init needs libc6-dev's libc.a, rootless._syscalls Python.h);
# busybox-static: the image of the demo and the tests; umoci/skopeo: OCI layouts in tests;
# podman/runc/bubblewrap/charliecloud-runtime/fuse-overlayfs: peers for `nox -s bench`;
# docker-registry/apache2-utils (htpasswd)/openssl: the registry tests' real registry.
# slirp4netns/passt (pasta): a container's own network namespace, -p (rsbox run --network).
# mmdebstrap: the Debian image of tests/e2e/test_workloads.py (git/gcc/python3/sqlite3).
# zsh/fish: tests/e2e/test_completion.py runs the completion scripts in them, and
# tests/e2e/test_env_trust.py the `rsbox hook` of each; bash-completion
# loads the one `./setup.sh venv` installs for you.
# inotify-tools: tests/multiuser watches a shared store for writes with inotifywait.
PACKAGES="python3 python3-venv python3-dev gcc libc6-dev pkg-config libfuse3-dev fuse3
libseccomp2 uidmap busybox-static umoci skopeo podman runc bubblewrap
charliecloud-runtime fuse-overlayfs docker-registry apache2-utils openssl
golang-github-containers-common git strace gdb nodejs slirp4netns passt mmdebstrap zsh fish
bash-completion inotify-tools"

packages() {
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    missing=""
    for p in $PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
    done
    if [ -n "$missing" ]; then
        $SUDO apt-get update -q
        # shellcheck disable=SC2086
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing
    fi
}

venv() {
    # Debian's interpreter, not one under a home directory that other users cannot read.
    [ -x .venv/bin/python ] || /usr/bin/python3 -m venv .venv
    # A regular install: an editable one adds an import hook to every Python start-up.
    .venv/bin/pip install -q --disable-pip-version-check '.[test,lint]' nox
    # bash completion for you (bash-completion loads it at the first TAB on `rsbox`);
    # zsh: source <(rsbox completion zsh); fish: rsbox completion fish > ~/.config/fish/completions/rsbox.fish
    comp="${XDG_DATA_HOME:-$HOME/.local/share}/bash-completion/completions"
    mkdir -p "$comp" && .venv/bin/rsbox completion bash > "$comp/rsbox"
}

demo() {
    root="${RSBOX_ROOT:-${XDG_DATA_HOME:-$HOME/.local/share}/rsbox}"
    rootfs=$(mktemp -d)
    chmod 0755 "$rootfs"
    mkdir -p "$rootfs/bin" "$rootfs/etc" "$rootfs/tmp"
    cp /bin/busybox "$rootfs/bin/busybox"
    for app in sh ls cat echo id ps hostname uname mount sleep; do ln -s busybox "$rootfs/bin/$app"; done
    echo "root:x:0:0:root:/root:/bin/sh" > "$rootfs/etc/passwd"
    echo "root:x:0:" > "$rootfs/etc/group"
    .venv/bin/rsbox --root "$root" import "$rootfs" busybox
    rm -rf "$rootfs"
    .venv/bin/rsbox --root "$root" images
    .venv/bin/rsbox --root "$root" run --rm busybox sh -c 'echo "hello from $(hostname), pid $$, uid $(id -u)"; ps'
}

case "${1:-all}" in
    packages) packages ;;
    venv) venv ;;
    demo) demo ;;
    all) packages; venv; demo ;;
    *) echo "usage: $0 [packages|venv|demo]" >&2; exit 2 ;;
esac
