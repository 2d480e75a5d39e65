"""Where a plan stands: every run done, running, queued or failed, from the results folder (the
records, failure records and run locks) and, for a submitted plan, from Slurm's queue."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from fsarbench.errors import FsarbenchError
from fsarbench.locks import is_held
from fsarbench.plan import plans_folder
from fsarbench.results import failure_path

DONE, RUNNING, QUEUED, FAILED, WAITING, ENDED, UNKNOWN = (
    "done",
    "running",
    "queued",
    "failed",
    "waiting",
    "ended without a record",
    "unknown",
)


@dataclass
class RunStatus:
    label: str
    state: str
    job_id: str | None
    log: str | None
    detail: str  # the error line of a failed run, or the last line of an ended job's log


def latest_plan_file(results_dir: Path) -> Path:
    folder = plans_folder(results_dir)
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    if not files:
        raise FsarbenchError(
            f"no plan under {results_dir} (`fsarbench run` leaves one in {folder})",
            "start a suite with `fsarbench run --results-dir DIR`, or name that DIR",
        )
    return files[-1]


def slurm_states(job_ids: list[str]) -> dict[str, str] | None:
    """Job id -> Slurm state (PENDING, RUNNING, ...) of the jobs still in the queue; array tasks
    as ``ARRAY_TASK``. Jobs that ended are no longer listed (no accounting needed). None when
    the queue cannot be read (no squeue here, or the controller did not answer)."""
    if not job_ids:
        return {}
    if shutil.which("squeue") is None:
        return None
    arrays = sorted({job.split("_")[0] for job in job_ids})
    try:
        result = subprocess.run(
            ["squeue", "-h", "-r", "-o", "%i %T", "-j", ",".join(arrays)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except subprocess.TimeoutExpired:
        return None
    if result.returncode != 0 and "Invalid job id" not in result.stderr:
        return None  # e.g. "slurm_load_jobs error: Socket timed out"
    states = {}
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2:
            states[parts[0]] = parts[1]
    return states


def last_line(path: str | None) -> str:
    if not path:
        return ""
    for candidate in (Path(path).with_suffix(".err"), Path(path)):
        try:
            lines = [line for line in candidate.read_text(errors="replace").splitlines() if line]
        except OSError:
            continue
        if lines:
            return lines[-1][:200]
    return ""


@dataclass
class StageJobStatus:
    job_id: str
    names: list[str]  # the stages it computes
    state: str  # queued | running | ended
    detail: str  # the last line of its log once it ended


def stage_job_status(plan: dict) -> list[StageJobStatus]:
    """The stage jobs of a submitted plan, with the last line of the log of each that ended
    (submitit's "Job completed successfully", or the error)."""
    jobs: dict[str, StageJobStatus] = {}
    logs = {}
    for stage in plan["stages"]:
        if stage.get("job_id"):
            job = jobs.setdefault(stage["job_id"], StageJobStatus(stage["job_id"], [], "", ""))
            job.names.append(stage["name"])
            logs[stage["job_id"]] = stage.get("log")
    queue = slurm_states(list(jobs))
    for job_id, job in jobs.items():
        if queue is None:
            job.state = UNKNOWN
            continue
        state = queue.get(job_id)
        if state is None:
            job.state, job.detail = "ended", last_line(logs[job_id])
        else:
            job.state = RUNNING if state in ("RUNNING", "COMPLETING") else QUEUED
    return list(jobs.values())


def plan_status(plan_file: Path) -> tuple[dict, list[RunStatus]]:
    """The plan file's contents and the state of each of its runs."""
    try:
        plan = json.loads(plan_file.read_text())
    except (OSError, ValueError) as error:
        raise FsarbenchError(
            f"{plan_file} is not a readable plan ({error})", "name another with --plan"
        ) from None
    jobs = [run["job_id"] for run in plan["runs"] if run.get("job_id")]
    queue = slurm_states(jobs)
    unreadable = queue is None
    queue = queue or {}
    statuses = []
    for run in plan["runs"]:
        record, job = Path(run["record"]), run.get("job_id")
        failure = failure_path(record)
        detail = ""
        if record.is_file():
            state = DONE
        elif failure.is_file():
            state = FAILED
            failed = json.loads(failure.read_text())
            detail = failed.get("error", "")
        elif is_held(Path(run["lock"])) or queue.get(job) in ("RUNNING", "COMPLETING"):
            state = RUNNING
        elif job in queue:
            state = QUEUED if queue[job] in ("PENDING", "REQUEUED", "CONFIGURING") else queue[job]
        elif job and unreadable:
            state, detail = UNKNOWN, "Slurm's queue could not be read (squeue); try again"
        elif job:
            state = ENDED  # cancelled, killed or out of memory before it could write anything
            detail = last_line(run.get("log")) or (
                "the job never started: was a stage job it waited for cancelled or failed?"
            )
        else:
            state = WAITING
        statuses.append(RunStatus(run["label"], state, job, run.get("log"), detail))
    return plan, statuses
