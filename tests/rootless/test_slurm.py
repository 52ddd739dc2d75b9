from __future__ import annotations

from pathlib import Path

from rootless.slurm import DEFAULT_KILL_WAIT, grace_for, in_job, kill_wait, term_grace


def test_kill_wait_is_read_from_slurm_conf_last_one_wins() -> None:
    assert kill_wait("ClusterName=x\nKillWait=2\n") == 2
    assert kill_wait("killwait = 5\nKillWait=7\n") == 7
    assert kill_wait("# KillWait=9 is a comment\nClusterName=x\n") == DEFAULT_KILL_WAIT


def test_grace_leaves_a_second_for_cleanup_and_at_least_half_of_one() -> None:
    assert grace_for(30) == 29
    assert grace_for(1) == 0.5


def test_grace_only_inside_a_job_and_from_slurm_conf(tmp_path: Path) -> None:
    conf = tmp_path / "slurm.conf"
    conf.write_text("KillWait=4\n")
    assert term_grace({"SLURM_CONF": str(conf)}) is None
    assert not in_job({"SLURM_JOB_ID": ""})
    assert term_grace({"SLURM_JOB_ID": "3", "SLURM_CONF": str(conf)}) == 3
