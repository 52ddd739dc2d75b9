#!/bin/bash
# As root: make a cgroup v2 subtree delegated to USER, the way systemd delegates
# user@UID.service (the directories and their cgroup.procs, cgroup.subtree_control and
# cgroup.threads owned by the user), with a leaf for the user's processes, and print the
# leaf. .ci/run starts the suite in that leaf: rsbox then puts each container's cgroup
# beside it, in the delegated parent (as beside a systemd scope, in its slice;
# tests/e2e/test_cgroups.py). On this kind of host the v2 hierarchy is the hybrid one at
# /sys/fs/cgroup/unified, with no controllers to pass down: the container cgroups get
# cgroup.freeze, cgroup.kill and cgroup.events, not memory or pids. The v1 hierarchies
# are the machine's: never touched.
#
#   .ci/cgroup.sh USER    -> /sys/fs/cgroup/unified/USER.delegate/suite
set -euo pipefail
user=$1
root=$(awk '$9 == "cgroup2" { print $5; exit }' /proc/self/mountinfo)
if [ -z "$root" ]; then
    echo "no cgroup2 hierarchy is mounted" >&2
    exit 1
fi
cg="$root/$user.delegate"
for d in "$cg" "$cg/suite"; do
    mkdir -p "$d"
    chown "$user": "$d" "$d/cgroup.procs" "$d/cgroup.subtree_control" "$d/cgroup.threads"
done
echo "$cg/suite"
