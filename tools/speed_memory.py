"""Peak memory and time of every head's test on a feature store of SSv2-Full's size.

Builds (once, under ``--store-dir``) random float16 feature stores shaped like SSv2-Full's
test split with ResNet-50: 2,857 videos, 8 frames, 2,048 channels, pooled ``[V, 8, 2048]``
(94 MB) and, for heads that read maps, ``[V, 8, 2048, 7, 7]`` (4.6 GB); CLIP-FSAR's with
CLIP ViT-B/16's 512 channels. Then, for every
method's main config at paper dimensions and each shot count, a fresh process runs the very
path ``fsarbench run`` takes from stored features (``evaluate_from_features``: the head's
``encode_for_test`` once per video into preallocated rows, then ``compare`` over batches of
episodes sized by ``GATHER_BUDGET_BYTES``) on ``--episodes`` 5-way episodes with one query per
class, and reports:

- ``peak_rss_gib``: the process's peak resident memory (``VmHWM``), model included;
- ``model_rss_gib``: resident memory once the model is built, before the test;
- ``kept_gib``: the encoded rows the test keeps for all videos; ``encode_all_gib``: what
  ``encode`` returns for all videos (every branch, TA²N's warped maps included), the rows
  kept before ``encode_for_test``, computed from one chunk's shapes;
- ``encode_cpu_s`` and ``episodes_per_cpu_s`` (CPU-seconds, ``--threads`` torch threads;
  encode's share of the test's CPU time taken as its share of the wall time), and the CPU
  time of 10,000 episodes extrapolated from the episodes run.

Features are random: a head's memory and time do not depend on their values.

    python tools/speed_memory.py                          # every method, 1 and 5 shot
    python tools/speed_memory.py --methods ta2n --shots 1 --episodes 200
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

VIDEOS, CLASSES, FRAMES, CHANNELS, MAP_SIZE = 2857, 24, 8, 2048, 7
CLIP_CHANNELS = 512  # CLIP ViT-B/16's projected features, for heads that embed class names


def rss_gib(field: str = "VmRSS") -> float:
    """This process's resident memory now (``VmRSS``) or at its peak (``VmHWM``), in GiB.
    The peak is read here rather than from ``getrusage``'s ``ru_maxrss``, which Linux keeps
    across ``execve``: a child forked from a parent that had just written the 4.6 GB store
    would report the parent's resident size as its own peak."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def store_path(store_dir: Path, kind: str, channels: int) -> Path:
    shape = (VIDEOS, FRAMES, channels) + ((MAP_SIZE, MAP_SIZE) if kind == "maps" else ())
    path = store_dir / f"ssv2full-{kind}-{'x'.join(map(str, shape))}.npy"
    if path.exists():
        return path
    partial = path.with_suffix(".partial.npy")
    array = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float16, shape=shape)
    generator = np.random.default_rng(0)
    for start in range(0, VIDEOS, 64):  # [64, ...] at a time: bounded memory here too
        rows = array[start : start + 64]
        rows[...] = generator.standard_normal(rows.shape, dtype=np.float32)
    array.flush()
    del array
    os.replace(partial, path)
    return path


def child(method: str, shots: int, store: Path, episodes: int, threads: int) -> dict:
    import torch
    from speed_heads import fake_split, use_random_class_texts  # beside this file

    from fsarbench.benchmarks.registry import get_benchmark
    from fsarbench.config import compose_run_config
    from fsarbench.data.episodes import EpisodeSpec, sample_episodes
    from fsarbench.evaluation import evaluate_from_features
    from fsarbench.features import StoredFeatures
    from fsarbench.methods.base import row_bytes
    from fsarbench.registry import MODELS

    torch.set_num_threads(threads)
    config = compose_run_config(method, get_benchmark("ssv2-full"), k_shot=shots)
    torch.manual_seed(0)
    model = MODELS.build(dict(**config.method, backbone=config.backbone)).eval()
    split = fake_split(VIDEOS, CLASSES)
    episode_set = sample_episodes(split, EpisodeSpec(5, shots, 1, episodes, 0), config.protocol)
    stored = StoredFeatures(None, split.video_ids, np.load(store, mmap_mode="r"))
    use_random_class_texts(model, split)
    model_rss = rss_gib()

    # what encode() returns for every video, from one chunk's shapes (the rows kept before)
    with torch.inference_mode():
        sample = model.encode(torch.from_numpy(stored.read(np.arange(2))))
    encode_all = row_bytes(sample) * VIDEOS

    started = time.process_time()
    scores = evaluate_from_features(
        model, episode_set, stored, config.evaluation["episodes_per_batch"], progress=False
    )
    cpu_s = time.process_time() - started
    encode_s = cpu_s * scores.encode_seconds / scores.seconds  # its share of the wall time
    per_episode = max(cpu_s - encode_s, 1e-9) / episodes
    return {
        "method": method,
        "shot": shots,
        "features": model.feature_kind,
        "model_rss_gib": round(model_rss, 2),
        "peak_rss_gib": round(rss_gib("VmHWM"), 2),
        "kept_gib": round(scores.encoded_bytes / 2**30, 2),
        "encode_all_gib": round(encode_all / 2**30, 2),
        "encode_cpu_s": round(encode_s, 1),
        "episodes_run": episodes,
        "episodes_per_cpu_s": round(1 / per_episode, 1),
        "cpu_s_10k_episodes": round(encode_s + 10_000 * per_episode, 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default="all")
    parser.add_argument("--shots", default="1,5")
    parser.add_argument("--episodes", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--store-dir", type=Path, default=Path("/tmp/fsarbench-speed-memory"))
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)  # METHOD SHOTS STORE
    args = parser.parse_args()
    if args.child:
        method, shots, store = args.child
        print(json.dumps(child(method, int(shots), Path(store), args.episodes, args.threads)))
        return

    import pandas as pd

    from fsarbench.benchmarks.registry import get_benchmark
    from fsarbench.config import compose_run_config
    from fsarbench.names import resolve_methods
    from fsarbench.registry import MODELS

    args.store_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for method in resolve_methods(args.methods):
        config = compose_run_config(method, get_benchmark("ssv2-full"))
        kind = MODELS.get(config.method["type"]).feature_kind
        channels = CLIP_CHANNELS if MODELS.get(config.method["type"]).needs_text else CHANNELS
        store = store_path(args.store_dir, kind, channels)
        for shots in (int(s) for s in args.shots.split(",")):
            command = [sys.executable, __file__, "--child", method, str(shots), str(store)]
            command += ["--episodes", str(args.episodes), "--threads", str(args.threads)]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode:
                error = done.stderr.strip().splitlines()[-1:] or ["no message"]
                rows.append({"method": method, "shot": shots, "error": error[0]})
            else:
                rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(pd.DataFrame(rows[-1:]).to_string(index=False), flush=True)
    print()
    print(
        f"SSv2-Full-sized store ({VIDEOS:,} test videos, {FRAMES} x {CHANNELS}, maps "
        f"{MAP_SIZE}x{MAP_SIZE}, float16), 5-way, 1 query per class, {args.episodes:,} "
        f"episodes, {args.threads} torch thread(s); CPU-seconds"
    )
    print(pd.DataFrame(rows).to_markdown(index=False))


if __name__ == "__main__":
    main()
