"""Speed of each few-shot head over test episodes, from stored features, against the naive way.

For every method's main config, at paper dimensions (ResNet-50: C = 2048, T = 8, 7x7 maps for
heads that take maps) or synth's (C = 256, 4x4 maps), 5-way 1-shot and 5-shot with one query
per class:

- harness: the head's per-video part (``encode_for_test``) once per test video, then its
  episode part (``compare``) over all episodes in the batches a run takes (the config's
  ``episodes_per_batch`` within the gather budget): what ``fsarbench run`` does;
- naive: the whole head inside every episode (``head`` on the episode's features), the way
  public FSAR codebases evaluate (they also run the backbone per episode, which this leaves out).

Features are random (the head's cost does not depend on their values); the test split has
``--videos`` videos in ``--videos // 10`` classes. Each path runs until ``--episodes`` episodes
or ``--max-seconds`` CPU-seconds, whichever comes first; episodes per CPU-second are measured
over the episodes actually run, and the table says how many that was.

The roofline (Williams et al.'s, compute and memory): ``gflop_per_episode`` is the
matrix-multiply and convolution work of one batch of ``compare`` as torch's
``FlopCounterMode`` counts it (mm, bmm, einsum's products, conv; elementwise work, reductions
and gathers are not counted), per episode, and ``mb_per_episode`` the bytes of the encoded rows
the episode's videos bring to ``compare`` (support and query, as gathered), which it must read
at least once. The limit of an episode is the larger of its flops at the rate of a 1024 x 1024
float32 matrix product and its bytes at the rate of a sum over a 256 MiB array (read
bandwidth beyond the caches), both measured in the same process; ``bound`` says which one is
larger, and ``x_roofline`` is the head's CPU time per episode over that limit, so 1.0 is a
compare that does nothing but its products at full speed, or nothing but read its rows once.
A head that states its flops (``compare_flops``, TRX) shows them beside the count
(``stated_gflop``). A²M²-Net's episode work is mostly exact EMD solves (a linear program, not a
product), which the count leaves out: its ratio bounds the products alone.

    python tools/speed_heads.py                         # paper dims, every method, 1 and 5 shot
    python tools/speed_heads.py --dims synth --episodes 10000
    python tools/speed_heads.py --methods otam,trx --shots 5 --max-seconds 60
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

from fsarbench.benchmarks.registry import get_benchmark
from fsarbench.config import compose_run_config
from fsarbench.data.episodes import EpisodeSpec, SplitVideos, sample_episodes
from fsarbench.evaluation import encode_videos, episode_logits_from_encoded, episodes_within
from fsarbench.features import StoredFeatures
from fsarbench.names import resolve_methods
from fsarbench.registry import MODELS

DIMS = {"paper": "ssv2-full", "synth": "synth"}  # benchmark whose config gives the dims
MAP_SIZE = {"paper": 7, "synth": 4}


def fake_split(videos: int, classes: int | None = None) -> SplitVideos:
    """A test split of ``videos`` ids in ``classes`` classes (default: one per 10 videos)."""
    classes = classes or max(videos // 10, 5)
    return SplitVideos(
        "speed",
        "test",
        tuple(f"class{c}" for c in range(classes)),
        tuple(f"v{i:05d}" for i in range(videos)),
        tuple(i % classes for i in range(videos)),
    )


def use_random_class_texts(model, split: SplitVideos) -> None:
    """Random unit class texts for a head that embeds class names (CLIP-FSAR): its cost does
    not depend on them, and the speed tools have no CLIP text tower."""
    if model.needs_text:
        bank = torch.nn.functional.normalize(
            torch.randn(len(split.classes), model.channels), dim=-1
        )
        model.text_features = lambda labels: bank[[split.classes.index(c) for c in labels]]


def random_features(model, videos: int, frames: int, size: int) -> StoredFeatures:
    generator = torch.Generator().manual_seed(0)
    channels = model.channels
    shape = (videos, frames, channels) + ((size, size) if model.feature_kind == "maps" else ())
    features = torch.randn(*shape, generator=generator).numpy()
    return StoredFeatures(None, tuple(f"v{i:05d}" for i in range(videos)), features)


def measure(method: str, dims: str, k_shot: int, args) -> dict:
    benchmark = get_benchmark(DIMS[dims])
    config = compose_run_config(method, benchmark, k_shot=k_shot, episodes=args.episodes)
    protocol = config.protocol
    torch.manual_seed(0)
    model = MODELS.build(dict(**config.method, backbone=config.backbone)).eval()
    split = fake_split(args.videos)
    spec = EpisodeSpec(5, k_shot, 1, args.episodes, 0)
    episodes = sample_episodes(split, spec, dict(protocol))
    stored = random_features(model, args.videos, protocol["num_frames"], MAP_SIZE[dims])
    use_random_class_texts(model, split)
    torch.set_num_threads(args.threads)

    started = time.process_time()
    encoded = encode_videos(model, episodes, stored)
    encode_s = time.process_time() - started
    # the batch fsarbench run takes: the config's episodes_per_batch within the gather budget
    batch = args.batch or episodes_within(
        encoded, episodes, config.evaluation["episodes_per_batch"]
    )
    started, harness_episodes = time.process_time(), 0
    while harness_episodes < len(episodes) and time.process_time() - started < args.max_seconds:
        stop = min(harness_episodes + batch, len(episodes))
        episode_logits_from_encoded(model, episodes, encoded, harness_episodes, stop)
        harness_episodes = stop
    compare_s = time.process_time() - started

    rows = stored.rows_for(episodes.video_ids)
    started, naive_episodes = time.process_time(), 0
    with torch.inference_mode():
        while naive_episodes < len(episodes) and time.process_time() - started < args.max_seconds:
            e = naive_episodes
            support = torch.from_numpy(stored.read(rows[episodes.support[e]]))
            query = torch.from_numpy(stored.read(rows[episodes.query[e]]))
            context = {k: v[0] for k, v in model.episode_context(episodes, e, e + 1).items()}
            model.head(support, torch.from_numpy(episodes.support_labels[e]), query, **context)
            naive_episodes += 1
    naive_s = time.process_time() - started

    per_episode = compare_s / harness_episodes
    flops = counted_flops(model, episodes, encoded, min(batch, len(episodes)))
    videos_per_episode = episodes.support.shape[1] + episodes.query.shape[1]
    row_bytes = encoded.bytes_per_video() * videos_per_episode
    compute_s, memory_s = flops / args.matmul_rate, row_bytes / args.read_rate
    stated = model.compare_flops(5, k_shot, 5, protocol["num_frames"])  # 5 queries: 1 a class
    harness_total = encode_s + per_episode * len(episodes)  # 10,000 episodes, encode included
    naive_total = naive_s / naive_episodes * len(episodes)
    return {
        "method": method,
        "dims": dims,
        "shot": k_shot,
        "features": model.feature_kind,
        "encode_s": round(encode_s, 2),
        "videos": args.videos,
        "batch": batch,
        "harness_episodes_run": harness_episodes,
        "harness_episodes_per_s": round(harness_episodes / compare_s, 1),
        "harness_total_s": round(harness_total, 1),
        "naive_episodes_run": naive_episodes,
        "naive_episodes_per_s": round(naive_episodes / naive_s, 1),
        "naive_total_s": round(naive_total, 1),
        "speedup": round(naive_total / harness_total, 1),
        "gflop_per_episode": round(flops / 1e9, 4),
        "stated_gflop": round(stated / 1e9, 4) if stated else None,
        "mb_per_episode": round(row_bytes / 1e6, 3),
        # the roofline: the episode's flops at the matrix-multiply rate of this process, or its
        # rows read once at this process's read bandwidth, whichever takes longer
        "bound": "compute" if compute_s >= memory_s else "memory",
        "x_roofline": round(per_episode / max(compute_s, memory_s), 1),
    }


def counted_flops(model, episodes, encoded, batch: int) -> float:
    """Products' flops per episode of one ``compare`` batch of ``batch`` episodes, as torch's
    ``FlopCounterMode`` counts them (multiply-adds count two)."""
    with FlopCounterMode(display=False) as counter:
        episode_logits_from_encoded(model, episodes, encoded, 0, batch)
    return counter.get_total_flops() / batch


def matmul_rate(threads: int, size: int = 1024, repeats: int = 20) -> float:
    """float32 flops per CPU-second of a square matrix product at ``threads`` threads: what a
    head's compare could reach at best on this CPU (heads are timed in CPU-seconds too)."""
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    started = time.process_time()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.process_time() - started)


def read_rate(threads: int, mib: int = 256, repeats: int = 10) -> float:
    """Bytes per CPU-second that a sum over a float32 array far larger than the caches reads
    at ``threads`` threads: the memory side of the roofline."""
    torch.set_num_threads(threads)
    array = torch.ones(mib << 18)  # mib MiB of float32
    array.sum()
    started = time.process_time()
    for _ in range(repeats):
        array.sum()
    return array.numel() * 4 * repeats / (time.process_time() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default="all")
    parser.add_argument("--dims", choices=tuple(DIMS), default="paper")
    parser.add_argument("--shots", default="1,5")
    parser.add_argument("--episodes", type=int, default=10_000)
    parser.add_argument("--videos", type=int, default=240)
    parser.add_argument(
        "--batch", type=int, default=0, help="episodes per compare call (default: as a run)"
    )
    parser.add_argument("--max-seconds", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    shots = [int(s) for s in args.shots.split(",")]
    args.matmul_rate = matmul_rate(args.threads)
    args.read_rate = read_rate(args.threads)
    rows = []
    for method in resolve_methods(args.methods):
        for k_shot in shots:
            try:
                rows.append(measure(method, args.dims, k_shot, args))
            except Exception as error:  # one broken head is a row, not the end of the sweep
                rows.append(
                    {
                        "method": method,
                        "dims": args.dims,
                        "shot": k_shot,
                        "error": f"{type(error).__name__}: {error}",
                    }
                )
            print(pd.DataFrame(rows[-1:]).to_string(index=False), flush=True)
    table = pd.DataFrame(rows)
    print()
    print(
        f"{args.episodes:,} test episodes, 5-way, 1 query per class, {args.dims} dims, "
        f"{args.threads} threads; totals extrapolate from the episodes run; matrix-multiply "
        f"rate {args.matmul_rate / 1e9:.1f} GFLOP/s, read bandwidth "
        f"{args.read_rate / 1e9:.1f} GB/s (x_roofline: the head's time per episode over the "
        "larger of its counted products' flops at that rate and its rows' bytes at that "
        "bandwidth)"
    )
    print(table.to_markdown(index=False))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
