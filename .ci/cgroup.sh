#!/bin/bash
# As root: make a cgroup v2 directory delegated to USER, the way systemd delegates
# user@UID.service (the directory and its cgroup.procs, cgroup.subtree_control and
# cgroup.threads owned by the user), and print its path. .ci/run starts the suite inside
# it, so rsbox finds its own cgroup delegated and gives each container a child cgroup
# (tests/e2e/test_cgroups.py). On this kind of host the v2 hierarchy is the hybrid one at
# /sys/fs/cgroup/unified, with no controllers to pass down: the child cgroups get
# cgroup.freeze, cgroup.kill and cgroup.events, not memory or pids. The v1 hierarchies
# are the machine's: never touched.
#
#   .ci/cgroup.sh USER    -> /sys/fs/cgroup/unified/USER.delegate
set -euo pipefail
user=$1
root=$(awk '$9 == "cgroup2" { print $5; exit }' /proc/self/mountinfo)
if [ -z "$root" ]; then
    echo "no cgroup2 hierarchy is mounted" >&2
    exit 1
fi
cg="$root/$user.delegate"
mkdir -p "$cg"
chown "$user": "$cg" "$cg/cgroup.procs" "$cg/cgroup.subtree_control" "$cg/cgroup.threads"
echo "$cg"
