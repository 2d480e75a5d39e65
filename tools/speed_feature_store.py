"""Speed of the feature store against per-episode embedding, on the built-in synth.

Evaluates the same episode set both ways with ProtoNet (its default config and backbone) and
prints frame forwards, wall time and their ratios:

- store: embed every test video once into a fresh feature store, then run the head over all
  episodes, batched;
- per episode: decode and embed each episode's videos again, as public FSAR codebases do.

    python tools/speed_feature_store.py                     # 10,000 episodes, 1 and 5 shot
    python tools/speed_feature_store.py --episodes 500 --shots 1

Both paths are timed over the same number of episodes; nothing is extrapolated.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fsarbench.benchmarks.registry import get_benchmark
from fsarbench.data.benchmark import load_benchmark_data
from fsarbench.data.episodes import EpisodeSpec, sample_episodes
from fsarbench.evaluation import evaluate_from_features, evaluate_per_episode
from fsarbench.features import FeatureStore
from fsarbench.registry import MODELS
from fsarbench.runs import SuiteOptions, suite_run_config


def measure(k_shot: int, episodes: int, method: str) -> dict:
    benchmark = get_benchmark("synth")
    options = SuiteOptions(progress=True, training="none")
    config = suite_run_config(method, benchmark, None, k_shot, None, episodes, options)
    protocol, evaluation = config.protocol, config.evaluation
    data = load_benchmark_data(benchmark, config, options.synth, options.progress)
    spec = EpisodeSpec(protocol["n_way"], k_shot, protocol["queries_per_class_test"], episodes, 0)
    episode_set = sample_episodes(data.videos("test"), spec, protocol)
    torch.manual_seed(0)
    model = MODELS.build(dict(**config.method, backbone=config.backbone))
    model.eval()

    with tempfile.TemporaryDirectory() as scratch:  # a fresh store: every video embedded
        started = time.perf_counter()
        stored = data.features(
            FeatureStore(Path(scratch)),
            model,
            "test",
            evaluation["feature_dtype"],
            evaluation,
            progress=True,
        )
        cached = evaluate_from_features(
            model, episode_set, stored, evaluation["episodes_per_batch"], progress=True
        )
        store_seconds = time.perf_counter() - started
    naive = evaluate_per_episode(
        model,
        episode_set,
        data.clips("test"),
        evaluation["feature_dtype"],
        evaluation["num_workers"],
        progress=True,
    )
    return dict(
        k_shot=k_shot,
        episodes=episodes,
        store_frames=stored.frame_forwards,
        store_seconds=store_seconds,
        naive_frames=naive.frame_forwards,
        naive_seconds=naive.seconds,
        same_accuracy=bool(np.array_equal(cached.accuracies, naive.accuracies)),
        accuracy=100 * float(cached.accuracies.mean()),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=10_000)
    parser.add_argument("--shots", default="1,5")
    parser.add_argument("--method", default="protonet")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(f"{args.method} on synth (720 test videos), {torch.get_num_threads()} threads")
    print(
        f"{'shot':>4} {'episodes':>9} {'store frames':>13} {'naive frames':>13} "
        f"{'frames ratio':>12} {'store s':>9} {'naive s':>9} {'time ratio':>10} {'same acc':>8}",
        flush=True,
    )
    for k_shot in args.shots.split(","):
        r = measure(int(k_shot), args.episodes, args.method)
        print(
            f"{r['k_shot']:>4} {r['episodes']:>9,} {r['store_frames']:>13,} "
            f"{r['naive_frames']:>13,} {r['naive_frames'] / r['store_frames']:>11.1f}x "
            f"{r['store_seconds']:>9.1f} {r['naive_seconds']:>9.1f} "
            f"{r['naive_seconds'] / r['store_seconds']:>9.1f}x {r['same_accuracy']!s:>8}",
            flush=True,
        )


if __name__ == "__main__":
    main()
