"""`rsbox run` inside a Slurm job (srun, sbatch): what it does differently, and why.

How Slurm ends a job step (`scancel`, a time limit, a failed sibling task): slurmstepd
sends SIGCONT and SIGTERM to every process of the step, waits KillWait seconds
(slurm.conf, 30 by default), then SIGKILLs every process still there. Which processes
belong to the step is the proctrack plugin's answer: with proctrack/cgroup, the step's
cgroup; with proctrack/linuxproc or pgid, the descendants of slurmstepd by parent pid.

What that means for a container:

* The container's pid 1 ignores a SIGTERM it has no handler for (the kernel's rule for
  an init, as under Docker), so the SIGKILL round comes, and it kills rsbox too: nothing
  would remove the runtime directory or a `--rm` container. So in a job, P0 takes SIGTERM
  as Slurm means it: it forwards it, and if the container has not ended
  `KillWait - 1` seconds later (`term_grace`), it kills the container itself (137) and
  cleans up as after any exit, before Slurm's SIGKILL.
* pasta daemonizes: reparented to init, it is no descendant of slurmstepd, and a SIGKILL
  of the whole tree (which runs no guard) would leave it behind. In a job P0 is a child
  subreaper, so pasta stays in the step's tree and gets the step's signals (under
  proctrack/linuxproc; proctrack/pgid misses it, pasta has its own session, and P2's
  guard stops it after our own kill).
* The job's variables (SLURM_*, SLURMD_*) reach the container: rootless.runspec.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

DEFAULT_KILL_WAIT = 30.0  # slurm.conf(5)
# Where a node's slurm.conf is: $SLURM_CONF, the package's path, then the copy slurmd
# keeps in a "configless" cluster.
CONF_PATHS = (Path("/etc/slurm/slurm.conf"), Path("/run/slurm/conf/slurm.conf"))
_KILL_WAIT = re.compile(r"^\s*KillWait\s*=\s*(\d+)", re.IGNORECASE | re.MULTILINE)


def in_job(env: Mapping[str, str]) -> bool:
    return bool(env.get("SLURM_JOB_ID"))


def kill_wait(conf_text: str) -> float:
    """KillWait of a slurm.conf text (the last one wins, as Slurm reads it)."""
    found = _KILL_WAIT.findall(conf_text)
    return float(found[-1]) if found else DEFAULT_KILL_WAIT


def grace_for(kill_wait_s: float) -> float:
    """How long P0 lets the container handle SIGTERM: one second less than Slurm's, to
    leave time for the cleanup, and never less than half a second."""
    return max(0.5, kill_wait_s - 1.0)


def term_grace(env: Mapping[str, str]) -> float | None:
    """None outside a Slurm job (SIGTERM is only forwarded, as `docker run` does)."""
    if not in_job(env):
        return None
    paths = [Path(env["SLURM_CONF"])] if env.get("SLURM_CONF") else []
    for path in (*paths, *CONF_PATHS):
        try:
            return grace_for(kill_wait(path.read_text()))
        except OSError:
            continue
    return grace_for(DEFAULT_KILL_WAIT)
