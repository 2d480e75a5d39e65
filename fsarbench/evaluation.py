"""The meta-test engine: a head over every episode of a set, from stored features or by
embedding each episode's videos again (the way public FSAR codebases do it).

Both paths feed the head features rounded to the same dtype, so they compute the same
function; a test checks that they give the same logits.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from rich.progress import track
from torch.utils.data import DataLoader, Dataset

from fsarbench.console import stderr
from fsarbench.data.episodes import EpisodeSet
from fsarbench.features import DTYPES, StoredFeatures
from fsarbench.methods.base import (
    Encoded,
    empty_rows,
    row_bytes,
    take_rows,
    unflatten_rows,
    write_rows,
)
from fsarbench.workers import end_with_parent


@dataclass
class EpisodeScores:
    accuracies: np.ndarray  # [E] fraction of the episode's queries classified correctly
    predictions: np.ndarray  # [E, Q] predicted episode-local label of every query
    frame_forwards: int  # frames the backbone processed for this evaluation
    seconds: float
    encode_seconds: float = 0.0  # of which the head's per-video part (stored features only)
    encoded_bytes: int = 0  # the per-video rows kept for the whole test (stored features)


def _accuracy(predictions: torch.Tensor, query_labels: torch.Tensor) -> torch.Tensor:
    # predictions [E, Q], query_labels [E, Q] -> [E]
    return (predictions == query_labels).float().mean(dim=-1)


@dataclass
class EncodedVideos:
    """What the test keeps of every video of an episode set: the head's ``encode_for_test``
    rows (row ``i`` belongs to ``episodes.video_ids[i]``) and, when rows the head can rebuild
    were left out to stay within ``KEPT_BUDGET_BYTES``, the feature store to read back."""

    rows: Encoded
    stored: StoredFeatures | None = None  # only when rows were left out
    store_rows: np.ndarray | None = None  # [V] feature-store row of row i

    def take(self, index: torch.Tensor) -> Encoded:
        """Rows ``index`` ([n] episode video indices) -> ``[n, ...]`` each, plus their stored
        features as ``"features"`` (float32) when rows were left out."""
        taken = take_rows(self.rows, index)
        if self.stored is None:
            return taken
        features = self.stored.read(self.store_rows[index.numpy()])  # [n, T, ...] float32
        return {**taken, "features": torch.from_numpy(features)}

    def bytes_per_video(self) -> int:
        """Memory one gathered video takes in a batch: its rows and, when rows were left out,
        its features in float32 twice (as read, and the rows ``compare`` rebuilds from them:
        TA²N's warped maps are as large)."""
        size = row_bytes(self.rows)
        if self.stored is not None:
            size += 2 * 4 * int(np.prod(self.stored.features.shape[1:]))
        return size

    def nbytes(self) -> int:
        tensors = self.rows.values() if isinstance(self.rows, dict) else [self.rows]
        return sum(t.numel() * t.element_size() for t in tensors)


# The per-video rows a test keeps for all its videos: above it, rows the head can rebuild
# (``rebuildable_rows``) are left out and rebuilt per batch of episodes from the stored
# features. TA²N on SSv2-Full's 2,857 test videos: 11 GB of rows, 2.0 GB without its maps.
KEPT_BUDGET_BYTES = 2 << 30
# The rows gathered for one batch of episodes. Small on purpose: a batch whose rows and
# temporaries stay within the CPU's caches and below glibc's mmap threshold (at most 32 MiB)
# reuses its memory, where batches of 1 GiB had every temporary mapped and faulted in afresh
# (the default suite: 191 million page faults, 350 s of system time). Batch sizes change
# logits at float32 rounding only (OTAM, TA²N, CLIP-FSAR: at most 2e-6).
GATHER_BUDGET_BYTES = 16 << 20


def encode_videos(
    model, episodes: EpisodeSet, stored: StoredFeatures, chunk: int = 64
) -> EncodedVideos:
    """The head's per-video part (``model.encode_for_test`` for the episodes' shot count) for
    every video of the episode set, once, written chunk by chunk into storage allocated for
    all of them (peak memory: the rows kept, plus one chunk), leaving out the rows the head
    can rebuild if all rows would exceed ``KEPT_BUDGET_BYTES``."""
    rows = stored.rows_for(episodes.video_ids)  # episode video index -> feature row
    storage, left_out = None, ()
    with torch.inference_mode():
        context = model.video_context(episodes)  # {name: [V, ...]}
        for start in range(0, len(rows), chunk):
            features = stored.read(rows[start : start + chunk])  # [chunk, T, ...] float32
            part = model.encode_for_test(
                torch.from_numpy(features),
                episodes.spec.k_shot,
                **{name: value[start : start + chunk] for name, value in context.items()},
            )
            if storage is None:
                if row_bytes(part) * len(rows) > KEPT_BUDGET_BYTES and isinstance(part, dict):
                    left_out = tuple(name for name in model.rebuildable_rows if name in part)
                storage = empty_rows(_without(part, left_out), len(rows))
            write_rows(storage, slice(start, start + chunk), _without(part, left_out))
    if not left_out:
        return EncodedVideos(storage)
    return EncodedVideos(storage, stored, rows)


def _without(encoded: Encoded, names: tuple[str, ...]) -> Encoded:
    if not names:
        return encoded
    return {name: value for name, value in encoded.items() if name not in names}


def episodes_within(encoded: EncodedVideos, episodes: EpisodeSet, most: int) -> int:
    """How many episodes one batch may hold so that their gathered rows stay within
    ``GATHER_BUDGET_BYTES`` (TRX's tuple maps at paper dimensions are ~0.5 MB a video: 3
    episodes; ProtoNet's pooled rows 8 KB: 200)."""
    videos = episodes.support.shape[1] + episodes.query.shape[1]
    per_episode = encoded.bytes_per_video() * videos
    return max(1, min(most, GATHER_BUDGET_BYTES // max(1, per_episode)))


def episode_logits_from_encoded(
    model, episodes: EpisodeSet, encoded: EncodedVideos, start: int, stop: int
) -> torch.Tensor:
    """Logits ``[stop - start, Q, N]`` of a slice of episodes from encoded videos (rows in the
    order of ``episodes.video_ids``), the head's episode part batched across episodes."""
    support_index = torch.from_numpy(episodes.support[start:stop])  # [e, S]
    query_index = torch.from_numpy(episodes.query[start:stop])  # [e, Q]
    support = unflatten_rows(encoded.take(support_index.flatten()), support_index.shape)
    query = unflatten_rows(encoded.take(query_index.flatten()), query_index.shape)
    labels = torch.from_numpy(episodes.support_labels[start:stop])
    with torch.inference_mode():
        return model.compare(support, labels, query, **model.episode_context(episodes, start, stop))


def episode_logits_from_features(
    model, episodes: EpisodeSet, stored: StoredFeatures, start: int, stop: int
) -> torch.Tensor:
    """Logits ``[stop - start, Q, N]`` of a slice of episodes from stored features."""
    model.eval()
    encoded = encode_videos(model, episodes, stored)
    return episode_logits_from_encoded(model, episodes, encoded, start, stop)


def evaluate_from_features(
    model,
    episodes: EpisodeSet,
    stored: StoredFeatures,
    episodes_per_batch: int = 500,
    progress: bool = True,
) -> EpisodeScores:
    """Every episode scored from stored features: the head's per-video part runs once per
    video, its episode part over batches of episodes."""
    model.eval()
    started = time.perf_counter()
    encoded = encode_videos(model, episodes, stored)
    encode_seconds = time.perf_counter() - started
    episodes_per_batch = episodes_within(encoded, episodes, episodes_per_batch)
    accuracies = np.empty(len(episodes), dtype=np.float64)
    predictions = np.empty(episodes.query_labels.shape, dtype=np.int64)
    for start in track(
        range(0, len(episodes), episodes_per_batch),
        description=f"{len(episodes):,} episodes",
        console=stderr,
        disable=not progress,
    ):
        stop = min(start + episodes_per_batch, len(episodes))
        logits = episode_logits_from_encoded(model, episodes, encoded, start, stop)
        predicted = logits.argmax(dim=-1)  # [e, Q]
        labels = torch.from_numpy(episodes.query_labels[start:stop])
        accuracies[start:stop] = _accuracy(predicted, labels).numpy()
        predictions[start:stop] = predicted.numpy()
    seconds = time.perf_counter() - started
    return EpisodeScores(accuracies, predictions, 0, seconds, encode_seconds, encoded.nbytes())


class EpisodeClips(Dataset):
    """Each item is one episode's decoded clips, so DataLoader workers decode in parallel."""

    def __init__(self, dataset, episodes: EpisodeSet, start: int = 0, stop: int | None = None):
        self.dataset, self.episodes = dataset, episodes
        self.index_of = {dataset.get_data_info(i)["video_id"]: i for i in range(len(dataset))}
        self.start, self.stop = start, len(episodes) if stop is None else stop

    def __len__(self) -> int:
        return self.stop - self.start

    def _clips(self, video_indices) -> torch.Tensor:
        ids = [self.episodes.video_ids[i] for i in video_indices]
        return torch.stack([self.dataset[self.index_of[v]]["inputs"] for v in ids])

    def __getitem__(self, item: int):
        episode = self.start + item
        return (
            self._clips(self.episodes.support[episode]),  # [S, T, 3, H, W] uint8
            torch.from_numpy(self.episodes.support_labels[episode]),
            self._clips(self.episodes.query[episode]),  # [Q, T, 3, H, W] uint8
        )


def episode_logits_per_episode(
    model,
    episodes: EpisodeSet,
    dataset,
    feature_dtype: str,
    start: int = 0,
    stop: int | None = None,
    num_workers: int = 0,
    progress: bool = False,
):
    """Yields ``(logits [Q, N], frames embedded)`` per episode, embedding every video again."""
    model.eval()
    loader = DataLoader(
        EpisodeClips(dataset, episodes, start, stop),
        batch_size=None,
        num_workers=num_workers,
        worker_init_fn=end_with_parent,
    )
    rounding = getattr(torch, feature_dtype)
    for episode, (support, labels, query) in enumerate(
        track(loader, description="episodes (embedding each)", console=stderr, disable=not progress)
    ):
        index = (start + episode, start + episode + 1)
        context = {k: v[0] for k, v in model.episode_context(episodes, *index).items()}
        with torch.inference_mode():
            support_features = model.embed(support).to(rounding).float()
            query_features = model.embed(query).to(rounding).float()
            logits = model.head(support_features, labels, query_features, **context)
        yield logits, (support.shape[0] + query.shape[0]) * support.shape[1]


def evaluate_per_episode(
    model,
    episodes: EpisodeSet,
    dataset,
    feature_dtype: str = "float16",
    num_workers: int = 0,
    progress: bool = True,
) -> EpisodeScores:
    if feature_dtype not in DTYPES:
        raise ValueError(f"feature_dtype must be one of {tuple(DTYPES)}")
    started = time.perf_counter()
    accuracies = np.empty(len(episodes), dtype=np.float64)
    predictions = np.empty(episodes.query_labels.shape, dtype=np.int64)
    frames = 0
    logits_iter = episode_logits_per_episode(
        model,
        episodes,
        dataset,
        feature_dtype,
        num_workers=num_workers,
        progress=progress,
    )
    for episode, (logits, embedded) in enumerate(logits_iter):
        labels = torch.from_numpy(episodes.query_labels[episode])
        predicted = logits.argmax(dim=-1)  # [Q]
        accuracies[episode] = float(_accuracy(predicted[None], labels[None])[0])
        predictions[episode] = predicted.numpy()
        frames += embedded
    return EpisodeScores(accuracies, predictions, frames, time.perf_counter() - started)
