"""``fsarbench run``: test methods on benchmarks under the seeded protocol, then a leaderboard."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from mmengine.config import DictAction

from fsarbench.benchmarks.synth import SynthConfig
from fsarbench.cli.report import default_reported, print_leaderboard
from fsarbench.config import TRAINING_MODES
from fsarbench.console import stderr
from fsarbench.leakage import PRETRAINING_CORPORA, parse_pretrained_on
from fsarbench.runs import (
    RunOutcome,
    SuiteOptions,
    methods_for_backbone,
    resolve_benchmarks,
    resolve_methods,
    run_suite,
)


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


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "run",
        help="test methods on benchmarks (no arguments: the default suite on synth)",
        description="Each run is (method, benchmark, way, shot, seed). Runs whose record "
        "exists are skipped unless --force; an interrupted suite continues where it stopped.",
    )
    parser.add_argument("--methods", default="all", help="all, names or globs (default: all)")
    parser.add_argument("--datasets", default="synth", help="benchmarks (default: synth)")
    parser.add_argument("--shots", type=int_list, default=None, help="default: 1,5")
    parser.add_argument("--ways", type=int_list, default=None, help="default: 5")
    parser.add_argument("--seeds", type=int_list, default=[0, 1, 2], help="default: 0,1,2")
    parser.add_argument("--episodes", type=int, default=None, help="test episodes (default 10000)")
    parser.add_argument("--queries", type=int, default=None, help="queries per class (default 1)")
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
        action=DictAction,
        default={},
        metavar="KEY=VALUE",
        help="override config values, MMEngine style: schedule.meta.iters=500 "
        "evaluation.feature_dtype=float32 (`fsarbench config` shows the keys)",
    )
    parser.add_argument(
        "--no-feature-cache",
        action="store_true",
        help="embed every episode's videos again instead of once per video",
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
        "--synth",
        type=synth_settings,
        default=None,
        metavar="KEY=VALUE,...",
        help="synth generator settings, e.g. seed=1,tempo_warp=1.0 (default: the defaults)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    methods = resolve_methods(args.methods)
    if "all" in [part.strip() for part in args.methods.split(",")]:
        methods, left_out = methods_for_backbone(methods, args.backbone)
        if left_out:
            stderr.print(
                f"left out of `all`: {', '.join(left_out)} (they embed class names with CLIP's "
                "text tower: --backbone clip-vit-b16 --weights CLIP_FOLDER runs them)"
            )
    benchmarks = resolve_benchmarks(args.datasets)
    options = SuiteOptions(
        results_dir=args.results_dir,
        force=args.force,
        feature_cache=not args.no_feature_cache,
        weights=args.weights,
        backbone=args.backbone,
        device=args.device,
        amp=args.amp,
        progress=stderr.is_terminal,
        synth=args.synth,
        training=args.train,
        pretrain=args.pretrain,
        cfg_options=args.cfg_options,
        pretrained_on=parse_pretrained_on(args.pretrained_on),
        allow_leakage=args.allow_leakage,
    )
    ways, shots = args.ways or [None], args.shots or [1, 5]
    total = len(methods) * len(benchmarks) * len(ways) * len(shots) * len(args.seeds)
    names = ", ".join(b.name for b in benchmarks)
    stderr.print(f"{total} run{'s' * (total != 1)}: {', '.join(methods)} on {names}")
    outcomes = run_suite(
        methods,
        benchmarks,
        ways,
        shots,
        args.seeds,
        args.episodes,
        args.queries,
        options,
        on_outcome=print_outcome,
    )
    print()
    records = [outcome.record for outcome in outcomes]
    print_leaderboard(records, "md", None, reported=default_reported())
    print(f"records in {args.results_dir / 'runs'}; `fsarbench report` prints all of them")
    return 0


def print_outcome(outcome: RunOutcome) -> None:
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
