"""A private one-node Slurm cluster runs plain sbatch jobs and submitit's jobs, arrays,
dependencies and a USR2 preemption that requeues a Checkpointable (see slurm_cluster.py)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
from slurm_cluster import FINISHED_STATES, SlurmCluster

submitit = pytest.importorskip("submitit")
cloudpickle = pytest.importorskip("cloudpickle")

# The job's python imports neither tests/ nor this module (its sys.path is the checkout), so
# the functions and classes below travel by value instead of as "test_slurm_cluster.<name>".
cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.slow


def answer(value: int) -> int:
    return value + 1


def finished_at(delay_s: float) -> float:
    """Sleeps, then says when it returned: a dependent job must start after that."""
    time.sleep(delay_s)
    return time.time()


def started_at(value: int) -> tuple[int, float]:
    return value * value, time.time()


class SleepsUntilRequeued(submitit.helpers.Checkpointable):
    """First attempt sleeps until preempted; the requeued attempt returns at once.

    One file per attempt (named by SLURM_RESTART_COUNT) lets the test see the first attempt
    start, then count attempts.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def __call__(self) -> str:
        attempt = int(os.environ.get("SLURM_RESTART_COUNT", "0"))
        (self.folder / f"attempt-{attempt}").write_text(str(os.getpid()))
        if attempt == 0:
            time.sleep(60)
            return "not preempted"
        return f"done after {attempt} requeue"


def _executor(folder: Path, partition: str, time_min: int = 5) -> submitit.SlurmExecutor:
    executor = submitit.SlurmExecutor(folder=folder)
    executor.update_parameters(partition=partition, time=time_min, cpus_per_task=1, mem="500M")
    return executor


def test_sbatch_wrap_completes(slurm_env: SlurmCluster, tmp_path: Path) -> None:
    job_id = slurm_env.sbatch("--output", str(tmp_path / "out-%j.txt"), "--wrap", "hostname")
    assert slurm_env.wait_job(job_id, timeout_s=30) == "COMPLETED", slurm_env.diagnostics()
    assert (tmp_path / f"out-{job_id}.txt").read_text().strip() == slurm_env.hostname


def test_two_one_cpu_jobs_run_at_once(slurm_env: SlurmCluster, tmp_path: Path) -> None:
    if slurm_env.cpus < 2:
        pytest.skip("needs two CPUs")
    ids = [
        slurm_env.sbatch("-c", "1", "--mem=200M", "-o", str(tmp_path / "%j"), "--wrap", "sleep 4")
        for _ in range(2)
    ]
    running = frozenset({"RUNNING"})
    for job_id in ids:
        slurm_env.wait_job(job_id, running | FINISHED_STATES, timeout_s=15)
    assert [slurm_env.job_state(job_id) for job_id in ids] == ["RUNNING", "RUNNING"]
    for job_id in ids:
        assert slurm_env.wait_job(job_id, timeout_s=30) == "COMPLETED"


def test_submitit_job_returns_its_result(slurm_env: SlurmCluster, tmp_path: Path) -> None:
    executor = _executor(tmp_path / "jobs", slurm_env.partition)
    job = executor.submit(answer, 41)
    assert slurm_env.wait_job(job.job_id, timeout_s=45) == "COMPLETED", slurm_env.diagnostics()
    assert job.result() == 42
    # The sacct stand-in lets submitit see the state too, not only the result pickle.
    assert job.watcher.get_state(job.job_id, mode="force") == "COMPLETED"


def test_submitit_array_after_dependency(slurm_env: SlurmCluster, tmp_path: Path) -> None:
    executor = submitit.AutoExecutor(folder=tmp_path / "jobs", cluster="slurm")
    executor.update_parameters(
        slurm_partition=slurm_env.partition, timeout_min=5, cpus_per_task=1, mem_gb=0.5
    )
    # Long enough that, without the dependency, the array would start on the second CPU
    # while the first job still sleeps.
    first = executor.submit(finished_at, 5.0)
    executor.update_parameters(
        slurm_additional_parameters={"dependency": f"afterok:{first.job_id}"}
    )
    jobs = executor.map_array(started_at, [1, 2, 3])
    array_id = jobs[0].job_id.split("_")[0]
    assert [job.job_id for job in jobs] == [f"{array_id}_{index}" for index in range(3)]
    # The scheduler gives the pending reason on its next pass (sched_interval=1).
    deadline = time.monotonic() + 10
    reasons: list[str] = []
    while reasons != ["Dependency"] * 3 and time.monotonic() < deadline:
        time.sleep(0.25)
        reasons = slurm_env.run("squeue", "-h", "-r", "-j", array_id, "-o", "%r").stdout.split()
    assert reasons == ["Dependency"] * 3, slurm_env.diagnostics()
    for job in (first, *jobs):
        assert slurm_env.wait_job(job.job_id, timeout_s=45) == "COMPLETED", slurm_env.diagnostics()
    first_done = first.result()
    results = [job.result() for job in jobs]
    assert [value for value, _ in results] == [1, 4, 9]
    assert all(started > first_done for _, started in results)


def test_usr2_requeues_a_checkpointable(slurm_env: SlurmCluster, tmp_path: Path) -> None:
    marks = tmp_path / "attempts"
    marks.mkdir()
    # submitit calls any USR2 a time-out (which uses up one of max_num_timeout requeues) when
    # the job has run past min(80% of its time, time - 10 min): always, for time < 10 min.
    # 30 min makes this the preemption path, which does not count against that budget.
    executor = _executor(tmp_path / "jobs", slurm_env.partition, time_min=30)
    job = executor.submit(SleepsUntilRequeued(marks))
    deadline = time.monotonic() + 30
    # The callable runs after submitit has installed its USR2 handler: wait for its first file.
    while not (marks / "attempt-0").exists():
        assert time.monotonic() < deadline, slurm_env.diagnostics()
        assert slurm_env.job_state(job.job_id) not in FINISHED_STATES, job.stderr()
        time.sleep(0.2)
    slurm_env.run("scancel", "--signal=USR2", job.job_id)
    # Requeued jobs wait cred_expire + 1 s (11 s here) before they may start again.
    assert slurm_env.wait_job(job.job_id, timeout_s=45) == "COMPLETED", slurm_env.diagnostics()
    assert job.result() == "done after 1 requeue"
    assert sorted(path.name for path in marks.iterdir()) == ["attempt-0", "attempt-1"]
    info = slurm_env.run("scontrol", "show", "job", "-o", job.job_id).stdout
    assert "Restarts=1" in info
    log = job.stdout() or ""
    assert "Caught signal SIGUSR2" in log and "this job is preempted" in log, log
    assert f"Requeued job {job.job_id}" in log, log
