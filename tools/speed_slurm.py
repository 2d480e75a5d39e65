"""The small plan of the Slurm tests, run by the local executor and then submitted to a real
one-node Slurm, side by side in one process: wall time of each, the submission time per run,
and whether the records agree.

    python tools/speed_slurm.py                  # starts a private one-node Slurm (root, Debian's
                                                 # slurmctld, slurmd, slurm-client and munge)
    python tools/speed_slurm.py --methods protonet,trx --episodes 200 --meta-iters 300

Each executor starts from an empty cache of its own (synth generation, pretraining and the
feature stores included), so both wall times hold the same work. On one machine the Slurm
wall time is the local one plus what Slurm adds (sbatch, job start-up, the wait for the stage
job before the run array, the poll interval); on a cluster the runs of the array run at once.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))

from slurm_cluster import start_slurm  # noqa: E402  (the tests' cluster, in tests/)

SYNTH = ["--synth", "seed=3,videos_per_class=8,frames=8,size=32"]


def fsarbench(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "fsarbench", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, check=False)


def records(results: Path) -> dict[str, dict]:
    found = {}
    for path in sorted((results / "runs").rglob("*.json")):
        if path.name.endswith(".failed.json"):
            continue
        record = json.loads(path.read_text())
        found[f"{record['method']}-seed{record['seed']}"] = record
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default="protonet,trx")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--meta-iters", type=int, default=300)
    parser.add_argument("--timeout", type=float, default=1800.0)
    args = parser.parse_args()
    suite = [
        "run",
        "--methods",
        args.methods,
        "--shots",
        "1",
        "--seeds",
        args.seeds,
        "--episodes",
        str(args.episodes),
        *SYNTH,
        "--cfg-options",
        "schedule.pretrain.iters=20",
        "schedule.pretrain.checkpoint_interval=10",
        f"schedule.meta.iters={args.meta_iters}",
        "schedule.meta.val_interval=10",
        "schedule.meta.val_episodes=20",
    ]
    with tempfile.TemporaryDirectory(prefix="fsarbench-speed-slurm-") as scratch:
        root = Path(scratch)
        base = {**os.environ, "OMP_NUM_THREADS": "1"}

        local_env = {**base, "FSARBENCH_HOME": str(root / "local-home")}
        started = time.monotonic()
        done = fsarbench([*suite, "--results-dir", str(root / "local")], local_env)
        local_s = time.monotonic() - started
        if done.returncode != 0:
            sys.exit(f"the local run failed:\n{done.stderr[-3000:]}")
        local = records(root / "local")
        print(f"local executor: {len(local)} runs in {local_s:.1f} s wall")

        with start_slurm(root / "slurm-cluster") as cluster:
            slurm_env = {
                **base,
                **cluster.client_environ(),
                "FSARBENCH_HOME": str(root / "slurm-home"),
            }
            submission = [
                *suite,
                "--results-dir",
                str(root / "slurm"),
                "--executor",
                "slurm",
                "--gpus",
                "0",
                "--cpus",
                "1",
                "--time",
                "60",
            ]
            started = time.monotonic()
            done = fsarbench(submission, slurm_env)
            submit_s = time.monotonic() - started
            if done.returncode != 0:
                sys.exit(f"the submission failed:\n{done.stderr[-3000:]}")
            while len(records(root / "slurm")) < len(local):
                if time.monotonic() - started > args.timeout:
                    sys.exit(f"timed out waiting for the Slurm runs\n{cluster.diagnostics()}")
                time.sleep(0.5)
            slurm_s = time.monotonic() - started
        slurm = records(root / "slurm")
        sbatch = re.search(r"([0-9.]+) s to submit", done.stdout)
        sbatch_s = float(sbatch.group(1)) if sbatch else float("nan")
        print(
            f"Slurm executor: `fsarbench run --executor slurm` returned after {submit_s:.2f} s "
            f"wall (start-up, planning and submission), of which submitting the jobs "
            f"{sbatch_s:.2f} s ({sbatch_s / len(local):.3f} s per run); "
            f"{len(slurm)} runs done {slurm_s:.1f} s after the command started"
        )
        print(f"Slurm / local wall time: {slurm_s / local_s:.2f}x")
        same = all(
            slurm[key]["episode_accuracies"] == local[key]["episode_accuracies"] for key in local
        )
        print(f"same per-episode accuracies in every run: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
