"""``fsarbench run``: test methods on benchmarks under the seeded protocol, then a leaderboard."""

from __future__ import annotations

import argparse
from pathlib import Path

from fsarbench.cli.report import print_leaderboard
from fsarbench.console import stderr
from fsarbench.runs import (
    SuiteOptions,
    check_inputs,
    plan_suite,
    resolve_benchmarks,
    resolve_methods,
    run_one,
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
    parser.add_argument("--seeds", type=int_list, default=[0], help="default: 0")
    parser.add_argument("--episodes", type=int, default=None, help="test episodes (default 10000)")
    parser.add_argument("--queries", type=int, default=None, help="queries per class (default 1)")
    parser.add_argument(
        "--weights",
        type=Path,
        default=None,
        help="backbone state dict to load (default: the seeded initialisation)",
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
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default: cpu)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    methods = resolve_methods(args.methods)
    benchmarks = resolve_benchmarks(args.datasets)
    options = SuiteOptions(
        results_dir=args.results_dir,
        force=args.force,
        feature_cache=not args.no_feature_cache,
        weights=args.weights,
        device=args.device,
        progress=stderr.is_terminal,
    )
    check_inputs(benchmarks, options)
    plan = plan_suite(methods, benchmarks, args.ways or [None], args.shots or [1, 5], args.seeds)
    stderr.print(
        f"{len(plan)} runs: {', '.join(methods)} on {', '.join(b.name for b in benchmarks)}"
    )
    records = []
    for method, benchmark, n_way, k_shot, seed in plan:
        outcome = run_one(
            method, benchmark, n_way, k_shot, seed, args.episodes, args.queries, options
        )
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
        records.append(record)
    print()
    print_leaderboard(records, "md", None)
    print(f"records in {args.results_dir / 'runs'}; `fsarbench report` prints all of them")
    return 0
