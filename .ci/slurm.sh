#!/bin/bash
# A one-host Slurm cluster for tests/e2e/test_slurm.py, as root, without systemd or cgroups:
# munged, slurmctld and two slurmd "nodes" (n1, n2: Debian's build has MULTIPLE_SLURMD, so
# both run here with NodeHostname=localhost and their own port).
#
#   .ci/slurm.sh start   install (slurm-wlm, munge), write /etc/slurm/slurm.conf, start
#                        the daemons and wait until both nodes are idle (~1 s)
#   .ci/slurm.sh stop    stop the daemons by their pid files
#
# Plugins that need no cgroup: proctrack/linuxproc follows a job's processes by parent
# pid (what `scancel` kills), task/none, no accounting (no slurmdbd: the exit code Slurm
# records is read with `scontrol show job`). KillWait=2: SIGKILL 2 s after scancel's
# SIGTERM, instead of 30.
set -euo pipefail

run=/run/rsbox-slurm
conf=/etc/slurm/slurm.conf

start() {
    if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
        apt-get install -y -q --no-install-recommends slurm-wlm munge >/dev/null
    fi
    mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm "$run" /run/munge
    chown slurm: /var/spool/slurmctld /var/log/slurm
    chown munge: /run/munge
    [ -s /etc/munge/munge.key ] || runuser -u munge -- mungekey --create >/dev/null
    cat >"$conf" <<EOF
ClusterName=rsbox
SlurmctldHost=localhost
SlurmUser=slurm
SlurmctldPort=16817
SlurmctldPidFile=$run/slurmctld.pid
SlurmdPidFile=$run/slurmd-%n.pid
SlurmdSpoolDir=/var/spool/slurmd/%n
SlurmdLogFile=/var/log/slurm/slurmd-%n.log
SlurmctldLogFile=/var/log/slurm/slurmctld.log
StateSaveLocation=/var/spool/slurmctld
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
KillWait=2
SchedulerParameters=sched_interval=1
NodeName=n1 NodeHostname=localhost Port=17001 CPUs=2 State=UNKNOWN
NodeName=n2 NodeHostname=localhost Port=17002 CPUs=2 State=UNKNOWN
PartitionName=debug Nodes=n1,n2 Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
EOF
    chmod 0644 "$conf"
    stop
    runuser -u munge -- munged
    slurmctld -i  # -i: ignore state left by an earlier run
    for n in n1 n2; do
        mkdir -p "/var/spool/slurmd/$n"
        slurmd -N "$n"
    done
    for _ in $(seq 100); do
        if [ "$(sinfo -h -o '%t' -n n1,n2 2>/dev/null | sort -u)" = idle ]; then
            return 0
        fi
        sleep 0.1
    done
    echo "slurm did not come up:" >&2
    sinfo >&2 || true
    tail -n 20 /var/log/slurm/*.log >&2 || true
    exit 1
}

stop() {
    for f in "$run"/slurmd-*.pid "$run"/slurmctld.pid /run/munge/munged.pid; do
        [ -s "$f" ] || continue
        pid=$(cat "$f")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        rm -f "$f"
    done
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
