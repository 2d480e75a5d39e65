"""``fsarbench report``: the leaderboard from result records."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fsarbench.docs import DOCS_RESULTS, sync_docs
from fsarbench.fileio import atomic_write_text
from fsarbench.report import FORMATS, render_breakdown, render_leaderboard
from fsarbench.reported import DEFAULT_REPORTED, load_reported
from fsarbench.results import load_failures, load_records


def register(parser) -> None:
    """The options of `fsarbench report`, on the parser `fsarbench.cli` made for it."""
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=None,
        help="where the records are (default: ./results; with --write-docs or --check: "
        "./results/synth)",
    )
    parser.add_argument("--format", choices=FORMATS, default="md", help="default: md")
    parser.add_argument("--out", type=Path, default=None, help="write to a file, not stdout")
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="instead of the leaderboard: accuracy on the queries only temporal order can "
        "decide (synth's order twins) against the other queries",
    )
    parser.add_argument(
        "--plots",
        type=Path,
        default=None,
        metavar="DIR",
        help="also write figures (PNG and SVG) into DIR: accuracy with 95%% intervals per "
        "benchmark and shot, accuracy against shots",
    )
    papers = parser.add_mutually_exclusive_group()
    papers.add_argument(
        "--reported",
        type=Path,
        default=None,
        metavar="FILE",
        help="published numbers to show beside ours, for the columns we have (default: "
        "results/reported/published.csv of the checkout)",
    )
    papers.add_argument(
        "--no-reported", action="store_true", help="leave the published numbers out"
    )
    docs = parser.add_mutually_exclusive_group()
    docs.add_argument(
        "--write-docs",
        action="store_true",
        help="from the repository root: rewrite the generated numbers in README.md and "
        "configs/*/README.md",
    )
    docs.add_argument(
        "--check",
        action="store_true",
        help="from the repository root: exit 1 if those numbers are stale",
    )
    parser.set_defaults(handler=run)


def default_reported():
    """The checkout's published numbers, or None in an installed copy without them."""
    return load_reported(DEFAULT_REPORTED) if DEFAULT_REPORTED.is_file() else None


def print_leaderboard(
    records, fmt: str, out: Path | None, breakdown: bool = False, reported=None, failures=()
) -> None:
    if breakdown:
        text = render_breakdown(records, fmt)
    else:
        text = render_leaderboard(records, fmt, reported, failures)
    if out is None:
        print(text, end="" if text.endswith("\n") else "\n")
    else:
        atomic_write_text(out, text)
        print(f"wrote {out}")


def run(args: argparse.Namespace) -> int:
    if args.write_docs or args.check:
        return sync(args.results_dir or DOCS_RESULTS, write=args.write_docs)
    results_dir = args.results_dir or Path("results")
    records, failures = load_records(results_dir), load_failures(results_dir)
    if args.no_reported:
        reported = None
    elif args.reported is not None:
        reported = load_reported(args.reported)
    else:
        reported = default_reported()
    print_leaderboard(records, args.format, args.out, args.breakdown, reported, failures)
    if args.plots is not None:
        from fsarbench.plots import write_plots

        written = write_plots(records, args.plots)
        print(f"wrote {len(written)} figures to {args.plots}")
    return 0


def sync(results_dir: Path, write: bool) -> int:
    written, problems = sync_docs(Path.cwd(), results_dir, write)
    for path in written:
        print(f"wrote {path.relative_to(Path.cwd())}")
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print("run `fsarbench report --write-docs` and commit the READMEs", file=sys.stderr)
        return 1
    if not write:
        print(f"the generated numbers match the records in {results_dir}")
    return 0
