"""``fsarbench check``: the regression gate CI runs on results."""

from __future__ import annotations

import argparse
from pathlib import Path

from fsarbench.compare import TEST_NAME, format_p
from fsarbench.errors import FsarbenchError
from fsarbench.gate import (
    DEFAULT_ALPHA,
    DEFAULT_MIN_EFFECT,
    check_results,
    load_baseline,
    write_baseline,
)
from fsarbench.provenance import git_commit
from fsarbench.results import load_failures, load_records

EXIT_REGRESSION = 1


def register(parser) -> None:
    """The options of `fsarbench check`, on the parser `fsarbench.cli` made for it."""
    parser.description = (
        "Compares the results with a baseline on the same episode sets. Exit 1 "
        "when a method is significantly worse (below --alpha, under the training noise of the "
        "baseline's replicates, or a paired test over episodes for a baseline of one) by at "
        "least --min-effect points, when a baseline run is missing or a run failed; 2 on bad "
        "input (a baseline or record that cannot be compared)."
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--baseline", type=Path, help="baseline file to check against")
    action.add_argument(
        "--write-baseline",
        type=Path,
        metavar="FILE",
        help="write a baseline from the results instead (commit it, then check against it)",
    )
    parser.add_argument("--results-dir", type=Path, default=Path("results"))
    parser.add_argument(
        "--alpha",
        type=float,
        default=DEFAULT_ALPHA,
        help=f"significance level of the paired test (default {DEFAULT_ALPHA})",
    )
    parser.add_argument(
        "--min-effect",
        type=float,
        default=DEFAULT_MIN_EFFECT,
        help=f"smallest drop in accuracy points that fails (default {DEFAULT_MIN_EFFECT})",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import pandas as pd  # here: `fsarbench check --help` does not pay for it

    records = load_records(args.results_dir, replicates=args.write_baseline is not None)
    failures = load_failures(args.results_dir)
    if args.write_baseline is not None:
        if failures:
            raise FsarbenchError(
                f"{len(failures)} runs under {args.results_dir} failed (e.g. {failures[0].method} "
                f"seed {failures[0].seed}: {failures[0].error}); a baseline needs every run",
                "run the suite again until it finishes (`fsarbench status` shows the errors)",
            )
        write_baseline(records, args.write_baseline, git_commit())
        replicates = len({r.replicate for r in records})
        print(
            f"wrote {args.write_baseline}: {len(records)} runs ({replicates} training "
            f"replicates) from {args.results_dir}"
        )
        return 0
    rows = check_results(
        records, load_baseline(args.baseline), args.alpha, args.min_effect, failures
    )

    def number(value, form):
        return "–" if value is None else format(value, form)

    table = pd.DataFrame(
        [
            {
                "method": row.method,
                "backbone": row.backbone,
                "training": row.training,
                "episodes": f"{row.benchmark} {row.n_way}-way {row.k_shot}-shot",
                "seeds": row.seeds,
                "expected": number(row.expected, ".2f"),
                "actual": number(row.actual, ".2f"),
                "difference": "–"
                if row.difference is None
                else f"{row.difference:+.2f} ± {row.ci95:.2f}",
                "p": "–" if row.p_value is None else format_p(row.p_value),
                "noise": row.noise or "–",
                "status": row.status,
            }
            for row in rows
        ]
    )
    print(table.to_markdown(index=False, disable_numparse=True))
    failed = [row for row in rows if row.failed]
    print(
        f"\nexpected: the baseline {args.baseline}; actual: {args.results_dir}. A run fails "
        f"when it is worse by at least {args.min_effect} points with p < {args.alpha}, is "
        f"missing, or raised. Noise: 'N replicates' compares the run with the spread of the "
        f"baseline's N training replicates (a t prediction interval); 'episodes' is a paired "
        f"test over the episodes ({TEST_NAME})."
    )
    if failed:
        print(f"FAILED: {len(failed)} of {len(rows)} rows")
        return EXIT_REGRESSION
    print(f"passed: {len(rows)} rows")
    return 0
