"""Executors of a plan: ``local`` runs it in this process; ``slurm`` submits it with submitit.

On Slurm, every stage still to do becomes a job (a stage job computes the data, pretraining and
feature stores of the runs that need it), and the runs become job arrays that start once the
stages they read are done (``afterok``). Stages are computed once whichever process gets to them
first (``fsarbench.locks``), so a run that starts before a stage, or two suites submitted over
each other, still compute each stage exactly once. A job that reaches its time limit or is
preempted is requeued by submitit (Slurm signals it ``USR2`` first) and resumes from its last
checkpoint; a finished run is skipped, so submitting the same suite again only submits what is
left.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from fsarbench.errors import FsarbenchError
from fsarbench.plan import DONE, Plan, write_plan_file
from fsarbench.runs import RunRequest, SuiteOptions, compute_stages, run_requests


@dataclass
class SlurmSettings:
    """What each job asks of Slurm (``--slurm-profile FILE``'s ``[slurm]`` table, or options)."""

    partition: str | None = None
    gpus_per_job: int = 1
    # processes per run: one per GPU by default; several start as the ranks of one DDP
    # training (--launcher slurm), also on CPUs (gloo)
    ranks_per_job: int | None = None
    cpus_per_job: int = 8  # decoding workers live here
    mem_gb: int | None = None
    time_min: int = 24 * 60  # per job; a run past it is requeued and resumes
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    array_parallelism: int = 64  # runs of one array at once
    folder: str | None = None  # logs and submitit's files (default: <results>/.slurm)
    setup: tuple[str, ...] = ()  # shell lines before each job (module load ..., source ...)

    @classmethod
    def from_profile(cls, path: Path) -> SlurmSettings:
        import tomllib

        try:
            table = tomllib.loads(path.read_text()).get("slurm", {})
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise FsarbenchError(
                f"--slurm-profile {path} cannot be read as TOML ({error})",
                'write a [slurm] table: partition = "gpu", gpus_per_job = 1, time_min = 600',
            ) from None
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(table) - known)
        if unknown:
            raise FsarbenchError(
                f"--slurm-profile {path}: unknown settings {', '.join(unknown)}",
                f"use {', '.join(sorted(known))}",
            )
        if "setup" in table:
            table["setup"] = tuple(table["setup"])
        return cls(**table)

    def override(self, **values) -> SlurmSettings:
        """These settings with the options given on the command line (None: not given)."""
        given = {key: value for key, value in values.items() if value is not None}
        return SlurmSettings(**{**asdict(self), **given})


# --- what a job runs -----------------------------------------------------------------------


class StageJob:
    """A Slurm job computing shared stages: for each representative run, its data,
    pretraining and feature stores (not its training or test)."""

    def __call__(self, requests: list[RunRequest], options: SuiteOptions) -> None:
        _job_log_into_env()
        for request in requests:
            compute_stages(request, options)

    def checkpoint(self, *args):  # submitit: on timeout or preemption, requeue as it was
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args)


class RunJob:
    """A Slurm job (one task of a run array): one run, resumed from its last checkpoint when
    the job was requeued; a run that raises leaves its failure record. With several tasks (GPUs)
    the tasks are the ranks of one DDP run."""

    def __call__(self, request: RunRequest, options: SuiteOptions) -> bool:
        _job_log_into_env()
        # with several tasks, run_requests computes any stage still missing, then joins them
        # into the process group (--launcher slurm)
        outcomes = run_requests([request], options, stop_on_bad_input=False)
        return all(outcome.failure is None for outcome in outcomes)

    def checkpoint(self, *args):
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args)


def _job_log_into_env() -> None:
    """The job's log file, named in failure records (``FSARBENCH_JOB_LOG``)."""
    import submitit

    environment = submitit.JobEnvironment()
    os.environ["FSARBENCH_JOB_LOG"] = str(environment.paths.stdout).replace(
        "%t", str(environment.global_rank)
    )


# --- submission ----------------------------------------------------------------------------


@dataclass
class Submission:
    plan_file: Path
    stage_jobs: list[str]
    run_jobs: list[str]
    skipped_runs: int
    seconds: float


def submit_slurm(plan: Plan, options: SuiteOptions, settings: SlurmSettings) -> Submission:
    """Submit the plan's stages still to do and its runs not done; return at once.

    One stage job per group of stages (a pretraining and the feature stores of its backbone,
    say); a group's job also computes the data it reads, so the data gets a job of its own only
    when no other group's job reads it."""
    import submitit

    submitted: list[str] = []
    try:
        return _submit(submitit, plan, options, settings, submitted)
    except submitit.core.utils.FailedJobError as error:
        if submitted:  # nothing half-submitted: what went in before the refusal is cancelled
            subprocess.run(["scancel", *submitted], capture_output=True)
        message = str(error).strip().splitlines()[-1] if str(error).strip() else repr(error)
        raise FsarbenchError(
            f"sbatch refused a job of the plan ({message}); "
            f"{len(submitted)} jobs submitted before it were cancelled",
            "check --partition, --gpus, --cpus, --mem-gb, --time, --account and --qos against "
            "the cluster (`sinfo`, `sacctmgr show assoc`), or the --slurm-profile",
        ) from None


def _submit(submitit, plan, options, settings, submitted: list[str]) -> Submission:
    started = time.perf_counter()
    folder = Path(settings.folder or options.results_dir / ".slurm").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    groups: dict[str, list[int]] = {}
    for index, stage in enumerate(plan.stages):
        if stage.state != DONE:
            groups.setdefault(stage.group, []).append(index)
    covered_data = {
        d for indices in groups.values() for i in indices for d in plan.stages[i].depends
    }
    jobs: dict[tuple, dict] = {}
    jobs_of_stage: dict[int, set[str]] = {}  # the stage jobs a stage is done after
    stage_jobs: list[str] = []
    for indices in groups.values():
        stages = [plan.stages[i] for i in indices]
        if all(s.kind == "data" for s in stages) and set(indices) <= covered_data:
            continue  # computed first by the jobs of the stages that read it
        representatives = list({r: None for s in stages for r in s.representatives})
        gpus = min(settings.gpus_per_job, 1)  # stages run in one process
        executor = _executor(submitit, folder, settings, gpus, name=f"fsar-{stages[0].kind}")
        job = executor.submit(StageJob(), representatives, options)
        submitted.append(job.job_id)
        stage_jobs.append(job.job_id)
        for i in indices:
            jobs_of_stage[i] = {job.job_id}
            jobs[("stage", i)] = dict(job_id=job.job_id, log=str(job.paths.stdout))
    for index in covered_data - set(jobs_of_stage):  # data that the stage jobs reading it make
        if plan.stages[index].state != DONE:
            jobs_of_stage[index] = {
                job
                for i, ids in list(jobs_of_stage.items())
                if index in plan.stages[i].depends
                for job in ids
            }
    pending = [(i, run) for i, run in enumerate(plan.runs) if run.state != DONE]
    arrays: dict[tuple[str, ...], list[int]] = {}  # one array per set of stage jobs waited for
    for index, run in pending:
        after = {job for s in run.stages for job in jobs_of_stage.get(s, ())}
        arrays.setdefault(tuple(sorted(after)), []).append(index)
    run_jobs = []
    ranks = settings.ranks_per_job or max(settings.gpus_per_job, 1)
    for after, indices in arrays.items():
        gpus = settings.gpus_per_job
        executor = _executor(submitit, folder, settings, gpus, name="fsar-run", ranks=ranks)
        executor.update_parameters(slurm_array_parallelism=settings.array_parallelism)
        if after:
            executor.update_parameters(slurm_additional_parameters=_depend(list(after)))
        run_options = options
        if ranks > 1:  # the job's tasks are the ranks of one DDP run
            run_options = replace(options, launcher="slurm")
        requests = [plan.runs[i].request for i in indices]
        array = executor.map_array(RunJob(), requests, [run_options] * len(requests))
        submitted.extend(job.job_id for job in array)
        for index, job in zip(indices, array, strict=True):
            jobs[("run", index)] = dict(job_id=job.job_id, log=str(job.paths.stdout))
            run_jobs.append(job.job_id)
    plan_file = write_plan_file(plan, options.results_dir, "slurm", jobs)
    return Submission(
        plan_file,
        stage_jobs,
        run_jobs,
        len(plan.runs) - len(pending),
        time.perf_counter() - started,
    )


def _depend(job_ids: list[str]) -> dict:
    # afterok: start once those jobs succeeded; a failed stage cancels the runs waiting for it
    # (kill-on-invalid-dep) instead of leaving them pending for ever
    return {"dependency": "afterok:" + ":".join(job_ids), "kill-on-invalid-dep": "yes"}


def _executor(
    submitit, folder: Path, settings: SlurmSettings, gpus: int, name: str, ranks: int = 1
):
    executor = submitit.AutoExecutor(folder=folder / "%j", cluster="slurm")
    parameters = dict(
        name=name,
        timeout_min=settings.time_min,
        cpus_per_task=settings.cpus_per_job,
        nodes=1,
        tasks_per_node=ranks,
        slurm_partition=settings.partition,
        slurm_account=settings.account,
        slurm_qos=settings.qos,
        slurm_constraint=settings.constraint,
        slurm_setup=list(settings.setup),
    )
    if gpus:
        parameters["gpus_per_node"] = gpus
    if settings.mem_gb:
        parameters["mem_gb"] = settings.mem_gb
    executor.update_parameters(**{k: v for k, v in parameters.items() if v is not None})
    return executor


def check_slurm_available() -> None:
    """A clear message when there is no Slurm to submit to."""
    from shutil import which

    if which("sbatch") is None:
        raise FsarbenchError(
            "--executor slurm: no sbatch on this machine's PATH",
            "run on a Slurm login node (or with SLURM_CONF set), or use --executor local",
        )
    if os.environ.get("SLURM_CONF") and not Path(os.environ["SLURM_CONF"]).is_file():
        raise FsarbenchError(
            f"SLURM_CONF={os.environ['SLURM_CONF']}: no such file",
            "point SLURM_CONF at the cluster's slurm.conf, or unset it",
        )
