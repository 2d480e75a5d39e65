"""Why TA²N's 5-shot is below its 1-shot on synth: its trained checkpoints probed on the same
test episodes with the K-shot stage changed one part at a time.

Reads a cache the default suite filled (``FSARBENCH_HOME``: synth, its pretrained backbone, the
test split's stored maps, and the TA²N runs' trained checkpoints) and scores, for one seed,
seeded 5-way episodes of the test split (one query per class) with:

- ``as trained``: each checkpoint as the run tests it;
- ``identity``: the K-shot alignment's attention replaced by the identity, so a
  prototype is the frame-wise mean of its shots (each still warped by TTM and mapped by W'_v);
- the 1-shot checkpoint (the head trained on 1-shot episodes) on 5-shot episodes too, whose
  alignment weights 1-shot training never updates;
- alignment entropy: the alignment's mean entropy over the shot's frames, in nats,
  against log T for a uniform attention (diffuse) and 0 for a one-hot (sharp).

    FSARBENCH_HOME=DIR python tools/ta2n_shots.py --one-shot RUN --five-shot RUN [RUN ...]
        [--seed 0] [--episodes 2000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
from pathlib import Path
from unittest import mock

import numpy as np
import torch

from fsarbench.benchmarks.prepare import require_prepared
from fsarbench.benchmarks.registry import get_benchmark
from fsarbench.config import compose_run_config
from fsarbench.data.episodes import EpisodeSpec, sample_episodes, split_videos
from fsarbench.evaluation import evaluate_from_features
from fsarbench.features import FeatureKey, FeatureStore, weights_hash
from fsarbench.registry import MODELS

ORIGINAL_SOFTMAX = torch.Tensor.softmax
K_SHOT_SCORES_DIMS = 6  # the K-shot alignment's scores [E, N, R, K, T, T]; nothing else is 6-d


@contextlib.contextmanager
def alignment(kind: str, entropies: list[float] | None = None):
    """Within: the K-shot alignment's softmax over the shot's time as trained (recording its
    mean entropy into ``entropies``) or replaced by the identity (``kind="identity"``)."""

    def softmax(tensor, dim=None, **kwargs):
        if tensor.dim() != K_SHOT_SCORES_DIMS:
            return ORIGINAL_SOFTMAX(tensor, dim=dim, **kwargs)
        if kind == "identity":  # shot frame x feeds prototype frame y = x only
            eye = torch.eye(tensor.shape[-1], dtype=tensor.dtype, device=tensor.device)
            return eye.expand_as(tensor).clone()
        out = ORIGINAL_SOFTMAX(tensor, dim=dim, **kwargs)
        if entropies is not None:
            entropies.append(float(-(out * out.clamp_min(1e-12).log()).sum(dim).mean()))
        return out

    with mock.patch.object(torch.Tensor, "softmax", softmax):
        yield


def load_model(shots: int, checkpoint: Path):
    config = compose_run_config("ta2n", get_benchmark("synth"), k_shot=shots)
    model = MODELS.build(dict(**config.method, backbone=config.backbone))
    model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="of the probe's episodes")
    parser.add_argument("--episodes", type=int, default=2_000)
    parser.add_argument(
        "--one-shot",
        type=Path,
        required=True,
        metavar="RUN",
        help="a 1-shot TA²N run's training folder (FSARBENCH_HOME/cache/work/synth/ta2n/...)",
    )
    parser.add_argument(
        "--five-shot",
        type=Path,
        nargs="+",
        required=True,
        metavar="RUN",
        help="5-shot runs' training folders (several: e.g. two recipes)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)

    benchmark = get_benchmark("synth")
    prepared, folder = require_prepared(benchmark)
    test = split_videos(prepared, folder, "test")
    # the test maps embedded by the checkpoints' backbone (frozen: the same in every run)
    backbone = weights_hash(load_model(1, args.one_shot / "model.pth").backbone)
    store = FeatureStore()
    keys = [
        FeatureKey(**json.loads((folder / "index.json").read_text())["key"])
        for folder in (store.root / "synth" / "test").glob("maps-*")
        if (folder / "index.json").is_file()
    ]
    key = next((k for k in keys if k.weights_hash == backbone), None)
    stored = store.load(key) if key is not None else None
    if stored is None:
        raise SystemExit(
            f"no stored synth test maps of backbone {backbone[:16]} under {store.root}"
        )
    frames = stored.features.shape[1]
    checkpoints = [("1-shot", args.one_shot)]
    checkpoints += [(f"5-shot #{i}", run) for i, run in enumerate(args.five_shot, 1)]
    for label, run in checkpoints:
        print(f"{label}: {run}")

    print("| episodes | checkpoint | alignment | accuracy (%) | alignment entropy (nats) |")
    print("| --- | --- | --- | --- | --- |")
    for shots in (1, 5):
        config = compose_run_config("ta2n", benchmark, k_shot=shots)
        spec = EpisodeSpec(5, shots, 1, args.episodes, 10_000 + args.seed)
        episodes = sample_episodes(test, spec, config.protocol)
        for label, run in checkpoints:
            model = load_model(shots, run / "model.pth")
            for kind in ("as trained", "identity") if shots > 1 else ("as trained",):
                entropies: list[float] = []
                with alignment(kind, entropies), torch.inference_mode():
                    scores = evaluate_from_features(model, episodes, stored, 500, progress=False)
                entropy = f"{np.mean(entropies):.3f}" if entropies else "-"
                accuracy = 100 * scores.accuracies.mean()
                print(f"| {shots}-shot | {label} | {kind} | {accuracy:.2f} | {entropy} |")
    print(f"(a uniform alignment has entropy log {frames} = {math.log(frames):.3f}; one-hot, 0)")


if __name__ == "__main__":
    main()
