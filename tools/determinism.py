"""What changes a trained run's numbers on one machine: torch's thread count and
``torch.use_deterministic_algorithms``.

    python tools/determinism.py [--iters 60]

Runs the same short run (ProtoNet on a small synth: a pretraining of ITERS iterations, then
its frozen head, 200 test episodes) in fresh processes with empty caches under each setting,
twice for the first, and prints per setting the CPU-seconds, the pretrained backbone's weights
hash and the accuracy; runs whose hash equals the first setting's are bit-identical to it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

SETTINGS = [
    ("1 thread", 1, False),
    ("1 thread, again", 1, False),
    ("2 threads", 2, False),
    ("1 thread, deterministic algorithms", 1, True),
]


def one_run(threads: int, deterministic: bool, iters: int, work: Path) -> dict:
    results = work / "results"
    argv = ["run", "--methods", "protonet", "--shots", "1", "--seeds", "0", "--episodes", "200"]
    argv += ["--synth", "seed=5,videos_per_class=8,frames=8,size=32", "--results-dir", str(results)]
    argv += ["--cfg-options", f"schedule.pretrain.iters={iters}"]
    argv += ["schedule.pretrain.checkpoint_interval=" + str(iters), "schedule.meta.iters=20"]
    argv += ["schedule.meta.val_interval=10", "schedule.meta.val_episodes=20"]
    code = (
        "import sys, torch\n"
        f"torch.set_num_threads({threads})\n"
        f"torch.use_deterministic_algorithms({deterministic})\n"
        "from fsarbench.cli import main\n"
        f"sys.exit(main({argv!r}))\n"
    )
    env = dict(os.environ, FSARBENCH_HOME=str(work / "home"), OMP_NUM_THREADS=str(threads))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    (record_file,) = [p for p in (results / "runs").rglob("*.json")]
    record = json.loads(record_file.read_text())
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return dict(
        cpu_s=cpu,
        backbone=record["backbone_weights_hash"][:16],
        model=record["checkpoint_hash"][:16],
        acc=record["acc_mean"],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iters", type=int, default=60, help="pretraining iterations")
    args = parser.parse_args()
    rows = []
    for name, threads, deterministic in SETTINGS:
        with tempfile.TemporaryDirectory() as work:
            rows.append((name, one_run(threads, deterministic, args.iters, Path(work))))
            print(f"{name}: done", file=sys.stderr)
    reference = rows[0][1]
    print(f"{'setting':<36}{'CPU-s':>8}  {'backbone hash':<18}{'model hash':<18}{'acc %':>7}  same")
    for name, row in rows:
        same = row["model"] == reference["model"]
        print(
            f"{name:<36}{row['cpu_s']:>8.1f}  {row['backbone']:<18}{row['model']:<18}"
            f"{row['acc']:>7.2f}  {'yes' if same else 'no'}"
        )


if __name__ == "__main__":
    main()
