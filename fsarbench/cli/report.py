"""``fsarbench report``: the leaderboard from result records."""

from __future__ import annotations

import argparse
from pathlib import Path

from fsarbench.fileio import atomic_write_text
from fsarbench.report import FORMATS, render_breakdown, render_leaderboard
from fsarbench.results import load_records


def register(subparsers) -> None:
    parser = subparsers.add_parser("report", help="leaderboard tables from result records")
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=Path("results"),
        help="where the records are (default: ./results)",
    )
    parser.add_argument("--format", choices=FORMATS, default="md", help="default: md")
    parser.add_argument("--out", type=Path, default=None, help="write to a file, not stdout")
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="instead of the leaderboard: accuracy on the queries only temporal order can "
        "decide (synth's order twins) against the other queries",
    )
    parser.set_defaults(handler=run)


def print_leaderboard(records, fmt: str, out: Path | None, breakdown: bool = False) -> None:
    text = (render_breakdown if breakdown else render_leaderboard)(records, fmt)
    if out is None:
        print(text, end="" if text.endswith("\n") else "\n")
    else:
        atomic_write_text(out, text)
        print(f"wrote {out}")


def run(args: argparse.Namespace) -> int:
    print_leaderboard(load_records(args.results_dir), args.format, args.out, args.breakdown)
    return 0
