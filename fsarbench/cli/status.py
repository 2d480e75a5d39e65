"""``fsarbench status``: every run of a suite, done, running, queued or failed."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path


def register(parser) -> None:
    """The options of `fsarbench status`, on the parser `fsarbench.cli` made for it."""
    parser.description = (
        "Reads the plan `fsarbench run` left in the results folder (the newest, "
        "or --plan FILE), the records and failure records beside it, the runs' locks, and "
        "Slurm's queue for a submitted plan."
    )
    parser.add_argument("--results-dir", type=Path, default=Path("results"))
    parser.add_argument("--plan", type=Path, default=None, help="a plan file (default: newest)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # imported here, when the command runs: `fsarbench status --help` does not pay for them
    import pandas as pd

    from fsarbench.status import latest_plan_file, plan_status, stage_job_status

    plan_file = args.plan or latest_plan_file(args.results_dir)
    plan, statuses = plan_status(plan_file)
    table = pd.DataFrame(
        [
            {
                "state": status.state,
                "run": status.label,
                "job": status.job_id or "–",
                "log / error": status.detail or status.log or "",
            }
            for status in statuses
        ]
    )
    print(f"plan {plan_file.name} ({plan['executor']}, {plan['created']})")
    for job in stage_job_status(plan):
        detail = f": {job.detail}" if job.detail else ""
        more = f" and {len(job.names) - 1} more stages" if len(job.names) > 1 else ""
        print(f"stage job {job.job_id} ({job.names[0]}{more}): {job.state}{detail}")
    if len(table):
        print(table.to_markdown(index=False, disable_numparse=True))
    counts = Counter(status.state for status in statuses)
    print(", ".join(f"{count} {state}" for state, count in counts.most_common()))
    return 0
