"""The container's environment: Docker's merge of the image's Env and `-e` (pure).

Its own module because `run` (rootless.runspec) and `exec` (rootless.launch.exec) both
merge, and `exec` must not import runspec (dataclasses, pathlib: ~15 ms of its CPU).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


# Inside a Slurm job (srun, sbatch) the job's variables reach the container, so that a
# program in it sees its rank, task count, node list and job id as it would outside:
# every SLURM_* and SLURMD_* variable of the host, over the image's Env, under -e.
# Outside a job there are none, so nothing changes.
PASSED_THROUGH = ("SLURM_", "SLURMD_")


def passed_through(host_env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in host_env.items() if k.startswith(PASSED_THROUGH)}


def merge_env(
    base: Sequence[str], overrides: Sequence[str], host_env: Mapping[str, str]
) -> list[str]:
    """Image Env, then the host's Slurm variables (PASSED_THROUGH), then -e in order.
    `-e KEY` (no '=') copies KEY from the host, as Docker does, and is dropped when the
    host does not have it."""
    merged: dict[str, str] = {}
    for item in base:
        key, _, value = item.partition("=")
        merged[key] = value
    merged.update(passed_through(host_env))
    for item in overrides:
        key, eq, value = item.partition("=")
        if eq:
            merged[key] = value
        elif key in host_env:
            merged[key] = host_env[key]
    return [f"{k}={v}" for k, v in merged.items()]
