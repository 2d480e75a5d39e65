"""``fsarbench run``: test methods on benchmarks under the seeded protocol, then a leaderboard."""

from __future__ import annotations

import argparse
import re
import time
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING

from mmengine.config import DictAction

from fsarbench.benchmarks.synth import SynthConfig
from fsarbench.config import TRAINING_MODES
from fsarbench.console import stderr
from fsarbench.errors import FsarbenchError
from fsarbench.leakage import PRETRAINING_CORPORA, parse_pretrained_on, read_pretraining_labels
from fsarbench.runtime import DEFAULT_THREADS

if TYPE_CHECKING:
    from fsarbench.runs import RunOutcome

# Some runs of the suite failed (the others finished): not bad input (2), not an interruption.
EXIT_RUNS_FAILED = 1


def int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of integers"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError("give at least one integer")
    return values


# (option, smallest value, largest value): checked before anything runs
COUNT_LIMITS = (
    ("ways", 2, 1000),
    ("shots", 1, 1000),
    ("queries", 1, 1000),
    ("episodes", 2, 10_000_000),  # one episode has no interval, no paired test
    ("seeds", 0, 2**32 - 1),  # numpy's seed range
    ("replicate", 0, 2**32 - 1),
    ("threads", 1, 1024),
    ("jobs", 1, 1024),
)


def check_counts(args: argparse.Namespace) -> None:
    """Every numeric option in range, or one message naming it: a zero never falls back to
    the protocol's default, a negative seed never reaches numpy."""
    for name, low, high in COUNT_LIMITS:
        given = getattr(args, name)
        if given is None:
            continue
        for value in given if isinstance(given, list) else [given]:
            if not low <= value <= high:
                raise FsarbenchError(
                    f"--{name} {value} is out of range",
                    f"give --{name} from {low} to {high:,}",
                )


def parse_cfg_options(items: list[str]) -> dict:
    """``KEY=VALUE`` items into MMEngine's override dict (its DictAction parses the values:
    numbers, lists, tuples), or one message naming the item that is not ``KEY=VALUE``."""
    parsed = argparse.Namespace(cfg_options={})
    for item in items:
        key, separator, _ = item.partition("=")
        if not separator or not key.strip() or " " in key.strip():
            raise FsarbenchError(
                f"--cfg-options {item!r} is not KEY=VALUE",
                "write each override as one word, e.g. --cfg-options schedule.meta.iters=2000",
            )
        try:
            DictAction(option_strings=[], dest="cfg_options")(None, parsed, [item])
        except (ValueError, SyntaxError) as error:
            raise FsarbenchError(
                f"--cfg-options {item!r}: the value cannot be read ({error})",
                'quote lists and tuples as MMEngine reads them, e.g. key=[1,2] or key="(1,2)"',
            ) from None
    return parsed.cfg_options


TAG_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}")


def tag_name(text: str) -> str:
    # a tag becomes part of a folder name and of every table's row
    if not TAG_PATTERN.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a tag: use 1 to 40 letters, digits, '.', '_' or '-', starting "
            "with a letter or digit (--tag temp5)"
        )
    return text


def synth_settings(text: str) -> SynthConfig:
    """``key=value,key=value`` over SynthConfig's fields."""
    kinds = {f.name: f.type for f in fields(SynthConfig)}
    values = {}
    for part in [p.strip() for p in text.split(",") if p.strip()]:
        key, equals, value = part.partition("=")
        key = key.strip().replace("-", "_")
        if not equals or key not in kinds:
            raise argparse.ArgumentTypeError(
                f"{part!r}: expected key=value with key in {', '.join(kinds)}"
            )
        try:
            values[key] = float(value) if kinds[key] in (float, "float") else int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r}: {value!r} is not a number") from None
    return SynthConfig(**values)


def register(parser) -> None:
    """The options of `fsarbench run`, on the parser `fsarbench.cli` made for it."""
    parser.description = (
        "Each run is (method, benchmark, way, shot, seed). Runs whose record "
        "exists are skipped unless --force; an interrupted suite continues where it stopped."
    )
    parser.add_argument("--methods", default="all", help="all, names or globs (default: all)")
    parser.add_argument("--datasets", default="synth", help="benchmarks (default: synth)")
    parser.add_argument("--shots", type=int_list, default=None, help="default: 1,5")
    parser.add_argument("--ways", type=int_list, default=None, help="default: 5")
    parser.add_argument("--seeds", type=int_list, default=[0, 1, 2], help="default: 0,1,2")
    parser.add_argument("--episodes", type=int, default=None, help="test episodes (default 10000)")
    parser.add_argument("--queries", type=int, default=None, help="queries per class (default 1)")
    parser.add_argument(
        "--replicate",
        type=int,
        default=0,
        metavar="R",
        help="training replicate: R > 0 trains again from initial weights perturbed at float "
        "rounding's scale (seeds, data order and episodes kept), a record of its own "
        "(`fsarbench check --write-baseline` models training noise from several; report and "
        "compare read replicate 0; default: 0)",
    )
    parser.add_argument(
        "--backbone",
        default=None,
        help="backbone name (`fsarbench ls backbones`; default: the benchmark's, resnet18_synth "
        "on synth, resnet50 on the real benchmarks)",
    )
    parser.add_argument(
        "--weights",
        type=Path,
        default=None,
        help="backbone weights: a state-dict file (ResNet), or a Hugging Face folder (CLIP, "
        "VideoMAE); default: the seeded initialisation",
    )
    parser.add_argument(
        "--pretrained-on",
        type=str,
        default="",
        metavar="CORPORA",
        help="what the --weights were pretrained on, comma-separated ("
        + ", ".join(PRETRAINING_CORPORA)
        + "); recorded, and checked against the benchmark's test classes",
    )
    parser.add_argument(
        "--pretrained-labels",
        type=Path,
        default=None,
        metavar="FILE",
        help="the class names the --weights were trained on, one per line (or a JSON list): a "
        "run stops if any is one of the benchmark's test classes",
    )
    parser.add_argument(
        "--allow-leakage",
        action="store_true",
        help="run even when that pretraining has seen the benchmark's test classes "
        "(Kinetics on k100, SSv2 on ssv2-*); the record and the leaderboard mark the run",
    )
    parser.add_argument(
        "--train",
        choices=TRAINING_MODES,
        default=None,
        help="none: test the backbone as given; finetune: episodic training end to end; "
        "frozen: train the head on stored features (default: the benchmark's schedule; "
        "synth: pretraining, then frozen)",
    )
    parser.add_argument(
        "--pretrain",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="pretrain the backbone by classification over the train classes first "
        "(default: the schedule's choice)",
    )
    parser.add_argument(
        "--cfg-options",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="override config values, MMEngine style: schedule.meta.iters=500 "
        "evaluation.feature_dtype=float32 (`fsarbench config` shows the keys)",
    )
    parser.add_argument(
        "--no-feature-cache",
        action="store_true",
        help="embed every episode's videos again instead of once per video",
    )
    parser.add_argument(
        "--tag",
        type=tag_name,
        default=None,
        metavar="NAME",
        help="name these runs as an ablation row: records under METHOD+NAME, and every table "
        "says METHOD+NAME (untagged runs with changed settings are METHOD~HASH of them)",
    )
    parser.add_argument("--force", action="store_true", help="run again even if a record exists")
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=Path("results"),
        help="where records go (default: ./results)",
    )
    parser.add_argument(
        "--device",
        default="auto",
        help="auto (CUDA when there is one, else CPU), cpu or cuda[:N] (default: auto)",
    )
    parser.add_argument(
        "--amp",
        choices=("bf16", "fp16"),
        default=None,
        help="mixed precision for the backbone (fp16: CUDA only, with loss scaling in "
        "training); recorded, and part of the run's identity (default: float32)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=DEFAULT_THREADS,
        metavar="N",
        help=f"torch's CPU threads per process, and the EMD solver's (default: {DEFAULT_THREADS}, "
        "so that a training "
        "on CPU gives the same bits whatever the machine's core count; another N trains faster "
        "on an idle many-core CPU, gives other, equally valid weights, and is recorded)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help="runs at once in worker processes of --threads threads each, the local executor "
        "only; records are the same as one after the other (default: on CPU, the CPUs this "
        "process may use over --threads; on a GPU, 1)",
    )
    parser.add_argument(
        "--synth",
        type=synth_settings,
        default=None,
        metavar="KEY=VALUE,...",
        help="synth generator settings, e.g. seed=1,tempo_warp=1.0 (default: the defaults)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan (shared stages, runs, what is done) and do nothing",
    )
    parser.add_argument(
        "--executor",
        choices=("local", "slurm"),
        default="local",
        help="local: run here (default); slurm: submit the plan with submitit and return",
    )
    parser.add_argument(
        "--launcher",
        choices=("none", "pytorch", "slurm"),
        default="none",
        help="pytorch (under torchrun) or slurm (under srun): this process is one rank of "
        "a DDP training, MMEngine's launchers (default: none)",
    )
    slurm = parser.add_argument_group("Slurm (--executor slurm)")
    slurm.add_argument(
        "--slurm-profile", type=Path, default=None, help="a TOML file with a [slurm] table"
    )
    slurm.add_argument("--partition", default=None)
    slurm.add_argument("--gpus", type=int, default=None, help="GPUs per job (default 1)")
    slurm.add_argument(
        "--ranks",
        type=int,
        default=None,
        help="processes per run, the ranks of one DDP training (default: one per GPU)",
    )
    slurm.add_argument("--cpus", type=int, default=None, help="CPUs per rank (default 8)")
    slurm.add_argument("--mem-gb", type=int, default=None, help="memory per job")
    slurm.add_argument(
        "--time", type=int, default=None, metavar="MINUTES", help="per job (default 1440)"
    )
    slurm.add_argument("--account", default=None)
    slurm.add_argument("--qos", default=None)
    slurm.add_argument(
        "--array-parallelism", type=int, default=None, help="runs of one array at once"
    )
    slurm.add_argument(
        "--slurm-folder",
        type=Path,
        default=None,
        help="logs and submitit's files, on a shared filesystem (default: RESULTS_DIR/.slurm)",
    )
    parser.set_defaults(handler=run)


def slurm_settings(args: argparse.Namespace):
    from fsarbench.executors import SlurmSettings

    base = SlurmSettings.from_profile(args.slurm_profile) if args.slurm_profile else SlurmSettings()
    settings = base.override(
        gpus_per_job=args.gpus,
        ranks_per_job=args.ranks,
        partition=args.partition,
        cpus_per_job=args.cpus,
        mem_gb=args.mem_gb,
        time_min=args.time,
        account=args.account,
        qos=args.qos,
        array_parallelism=args.array_parallelism,
        folder=str(args.slurm_folder) if args.slurm_folder else None,
    )
    if settings.ranks_per_job is not None and settings.ranks_per_job < 1:
        raise FsarbenchError(f"--ranks {settings.ranks_per_job}: a run needs at least 1")
    for name in ("gpus_per_job", "cpus_per_job", "time_min", "array_parallelism"):
        if getattr(settings, name) < (0 if name == "gpus_per_job" else 1):
            raise FsarbenchError(f"Slurm setting {name} = {getattr(settings, name)} is too small")
    return settings


def run(args: argparse.Namespace) -> int:
    # imported here, when the command runs: `fsarbench run --help` does not pay for torch,
    # MMAction2 and the methods
    from fsarbench.names import methods_for_backbone, resolve_benchmarks, resolve_methods

    # what the names and numbers alone can tell is refused before torch is imported
    check_counts(args)
    methods = resolve_methods(args.methods)
    benchmarks = resolve_benchmarks(args.datasets)

    from fsarbench.cli.report import default_reported, print_leaderboard
    from fsarbench.distributed import is_main_process
    from fsarbench.plan import build_plan, write_plan_file
    from fsarbench.runs import (
        SuiteOptions,
        check_inputs,
        check_tags,
        default_jobs,
        run_requests,
        suite_requests,
    )

    if "all" in [part.strip() for part in args.methods.split(",")]:
        methods, left_out = methods_for_backbone(methods, args.backbone)
        if left_out:
            stderr.print(
                f"left out of `all`: {', '.join(left_out)} (they embed class names with CLIP's "
                "text tower: --backbone clip-vit-b16 --weights CLIP_FOLDER runs them)"
            )
    options = SuiteOptions(
        results_dir=args.results_dir,
        force=args.force,
        feature_cache=not args.no_feature_cache,
        weights=args.weights,
        backbone=args.backbone,
        device=args.device,
        amp=args.amp,
        threads=args.threads,
        progress=stderr.is_terminal,
        synth=args.synth,
        training=args.train,
        pretrain=args.pretrain,
        cfg_options=parse_cfg_options(args.cfg_options),
        pretrained_on=parse_pretrained_on(args.pretrained_on),
        pretrained_labels=(
            read_pretraining_labels(args.pretrained_labels)
            if args.pretrained_labels is not None
            else frozenset()
        ),
        allow_leakage=args.allow_leakage,
        launcher=args.launcher,
        replicate=args.replicate,
        tag=args.tag,
    )
    ways, shots = args.ways or [None], args.shots or [1, 5]
    requests = suite_requests(
        methods, benchmarks, ways, shots, args.seeds, args.episodes, args.queries
    )
    names = ", ".join(b.name for b in benchmarks)
    total = len(requests)
    if is_main_process():
        stderr.print(f"{total} run{'s' * (total != 1)}: {', '.join(methods)} on {names}")
    if args.executor == "slurm" and args.launcher != "none":
        raise FsarbenchError(
            "--launcher is for a process started by torchrun or srun; --executor slurm starts "
            "the ranks itself",
            "drop --launcher, and ask for GPUs per run with --gpus N",
        )
    if (
        args.jobs is not None
        and args.jobs > 1
        and (args.launcher != "none" or args.executor == "slurm")
    ):
        raise FsarbenchError(
            f"--jobs {args.jobs} runs several runs at once here; "
            + (
                "--launcher makes this process one rank of a DDP run"
                if args.launcher != "none"
                else "--executor slurm runs each run as a job of its own"
            ),
            "drop --jobs",
        )
    if args.dry_run or args.executor == "slurm":
        return plan_or_submit(args, methods, benchmarks, ways, shots, requests, options)
    check_inputs(methods, benchmarks, ways, shots, args.queries, options)
    check_tags(requests, options)
    if is_main_process():  # `fsarbench status` follows a local suite from its plan file too
        write_plan_file(build_plan(requests, options), args.results_dir, "local")
    # the other ranks of a DDP run train; rank 0 tests, prints and writes
    jobs = args.jobs
    if jobs is None:
        jobs = 1 if args.launcher != "none" else default_jobs(args.device, args.threads)
    jobs = min(jobs, total)  # no idle workers
    if jobs > 1 and is_main_process():
        stderr.print(f"{jobs} worker processes of {args.threads} thread{'s' * (args.threads > 1)}")
    outcomes = run_requests(
        requests, options, print_outcome if is_main_process() else None, jobs=jobs
    )
    if not is_main_process():
        return 0
    print()
    records = [outcome.record for outcome in outcomes if outcome.record is not None]
    failures = [outcome.failure for outcome in outcomes if outcome.failure is not None]
    print_leaderboard(records, "md", None, reported=default_reported(), failures=failures)
    print(f"records in {args.results_dir / 'runs'}; `fsarbench report` prints all of them")
    if failures:
        stderr.print(
            f"{len(failures)} of {len(outcomes)} runs failed (their failure records are beside "
            "the records; `fsarbench status` lists them); run the same command again to retry"
        )
        return EXIT_RUNS_FAILED
    return 0


def print_outcome(outcome: RunOutcome) -> None:
    if outcome.failure is not None:
        failure = outcome.failure
        print(
            f"{failure.method:<24} {failure.backbone:<16} {failure.benchmark:<10} "
            f"{failure.n_way}-way {failure.k_shot}-shot seed {failure.seed}: FAILED  "
            f"{failure.error}",
            flush=True,
        )
        return
    record = outcome.record
    status = "skipped, record exists" if outcome.skipped else f"{record.wall_time_s:.1f} s"
    print(
        f"{record.method:<24} {record.backbone:<16} {record.benchmark:<10} "
        f"{record.n_way}-way {record.k_shot}-shot seed {record.seed}: "
        f"{record.acc_mean:6.2f} ± {record.acc_ci95:.2f}  "
        f"({record.n_episodes:,} episodes, {status})",
        flush=True,
    )
    for note in outcome.notes:
        print(f"  note: {note}")


def plan_or_submit(args, methods, benchmarks, ways, shots, requests, options) -> int:
    """``--dry-run``: print the plan; ``--executor slurm``: submit it and return."""
    from fsarbench.plan import build_plan
    from fsarbench.runs import check_inputs, check_tags

    if args.executor == "slurm":
        from fsarbench.executors import check_slurm_available

        settings = slurm_settings(args)  # bad settings are refused before anything else
        check_slurm_available()
    started = time.perf_counter()
    if args.dry_run:
        plan = build_plan(requests, options)
        print(plan.render())
        print(f"planned in {time.perf_counter() - started:.2f} s; nothing was run")
        return 0
    check_inputs(methods, benchmarks, ways, shots, args.queries, options, generate=False)
    check_tags(requests, options)
    plan = build_plan(requests, options)
    from fsarbench.executors import submit_slurm

    submission = submit_slurm(plan, options, settings)
    print(plan.render())
    stages, runs = submission.stage_jobs, submission.run_jobs
    run_jobs = f" (jobs {runs[0]} .. {runs[-1]})" if runs else ""
    print(
        f"submitted {len(stages)} stage jobs ({', '.join(stages) or '-'}) and {len(runs)} runs"
        f"{run_jobs}; {submission.skipped_runs} runs already done; "
        f"{submission.seconds:.2f} s to submit"
    )
    print(
        f"`fsarbench status --results-dir {args.results_dir}` follows them ({submission.plan_file})"
    )
    return 0
