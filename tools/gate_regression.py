"""Does the gate catch a real regression? CI runs this after the gate's suite has passed.

    python tools/gate_regression.py GATE_RESULTS_DIR [--sigma 0.25]

A planted bug in a head: ProtoNet's class scores blurred by seeded noise (``sigma`` times
each query's score spread), a few points worse. ProtoNet runs as the gate's suite runs it
(1 and 5 shots, seed 0, 500 episodes, reusing the suite's cached stages), its records replace
the suite's own in a copy of GATE_RESULTS_DIR, and ``fsarbench check`` against the committed
baseline must fail on exactly ProtoNet's rows, as regressions. Exits 1 when it does not.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import torch

from fsarbench.cli import main as fsarbench
from fsarbench.gate import check_results, load_baseline
from fsarbench.methods.protonet import ProtoNet
from fsarbench.results import load_failures, load_records

BASELINE = Path(__file__).resolve().parent.parent / "results" / "baselines" / "ci_synth.json"


def plant(sigma: float) -> None:
    original = ProtoNet.compare
    generator = torch.Generator().manual_seed(0)

    def blurred(self, support, support_labels, query):
        logits = original(self, support, support_labels, query)  # [E, Q, N]
        noise = torch.randn(logits.shape, generator=generator, dtype=logits.dtype)
        return logits + sigma * logits.std(dim=-1, keepdim=True) * noise

    ProtoNet.compare = blurred


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="the gate suite's results folder")
    parser.add_argument("--sigma", type=float, default=0.25)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fsarbench-gate-regression-") as scratch:
        results = Path(scratch) / "results"
        shutil.copytree(args.results, results)
        shutil.rmtree(results / "runs" / "synth" / "protonet")
        plant(args.sigma)
        suite = ["run", "--methods", "protonet", "--datasets", "synth", "--shots", "1,5"]
        suite += ["--seeds", "0", "--episodes", "500", "--results-dir", str(results)]
        suite += ["--jobs", "1"]  # the planted bug lives in this process, not in workers
        if fsarbench(suite) != 0:
            sys.exit("the planted run did not finish")
        rows = check_results(
            load_records(results), load_baseline(BASELINE), failures=load_failures(results)
        )
        failed = sorted((row.method, row.k_shot, row.status) for row in rows if row.failed)
        for row in rows:
            if row.method == "protonet":
                print(
                    f"planted bug, protonet {row.k_shot}-shot: {row.difference:+.2f} points, "
                    f"p = {row.p_value:.2g} ({row.noise}): {row.status}"
                )
        expected = [("protonet", 1, "REGRESSION"), ("protonet", 5, "REGRESSION")]
        if failed != expected:
            sys.exit(f"the gate did not fail on exactly the planted regression: {failed}")
        print("the gate fails on the planted regression, and only on it")


if __name__ == "__main__":
    main()
