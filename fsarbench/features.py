"""The feature store: every test video embedded once per (backbone weights, test pipeline).

At test time a backbone sees one video at a time and test sampling and cropping are
deterministic, so a test video's features depend on (video, weights, test pipeline) alone.
They are computed once, written as one memory-mapped ``.npy`` array (float16 by default) with
an index of video ids, and read by every head over every episode. The folder name is the key:
benchmark, split, feature kind, dtype, a hash of the backbone's weights and a hash of the test
pipeline and prepared annotation list, so changing any of them never reads stale features;
methods with the same backbone checkpoint share them.

Embedding is resumable: rows are written in order to a partial file whose progress is
recorded after every batch, so an interrupted run continues where it stopped. One process
embeds a store while any others that need it wait for it (``fsarbench.locks``); the partial
file and its progress are only touched by that process.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.progress import track
from torch.utils.data import DataLoader, Dataset, Subset

from fsarbench.config import canonical_json
from fsarbench.console import stderr
from fsarbench.errors import FsarbenchError
from fsarbench.fileio import atomic_write_text
from fsarbench.locks import compute_once, is_held
from fsarbench.paths import cache_dir
from fsarbench.runtime import embed_batch_videos
from fsarbench.workers import end_with_parent

DTYPES = {"float16": np.float16, "float32": np.float32}


def weights_hash(module: torch.nn.Module) -> str:
    """sha256 over every parameter and persistent buffer, by name: equal weights, equal hash."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode() + str(tensor.dtype).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


# What an embedding computes from (video, weights, pipeline): a new version (a backbone's
# forward or pooling changed) never reads an old version's stores.
FEATURE_VERSION = 2  # 2: the data by content (lists and media digest), not by mount point


def pipeline_hash(pipeline: list[dict], annotation: Path, media_digest: str) -> str:
    """The test pipeline plus what it reads: the prepared list's bytes (relative paths,
    labels, frame counts) and the media digest of the prepared videos (their sizes), not
    where the data folder is mounted: a data or cache folder moved elsewhere keeps its
    stored features."""
    digest = hashlib.sha256(f"features-v{FEATURE_VERSION}".encode())
    digest.update(canonical_json(pipeline).encode())
    digest.update(annotation.read_bytes())
    digest.update(media_digest.encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class FeatureKey:
    benchmark: str
    split: str
    kind: str  # pooled | maps
    dtype: str  # float16 | float32
    weights_hash: str
    pipeline_hash: str
    amp: str | None = None  # the backbone's autocast: its features are not float32's

    @property
    def folder_name(self) -> str:
        amp = f"-{self.amp}" if self.amp else ""
        return f"{self.kind}-{self.dtype}{amp}-w{self.weights_hash[:16]}-p{self.pipeline_hash[:16]}"


@dataclass
class StoredFeatures:
    key: FeatureKey | None  # None: computed in memory, not stored
    video_ids: tuple[str, ...]
    features: np.ndarray  # memory-mapped [V, T, C] or [V, T, C, h, w]
    frame_forwards: int = 0  # frames this process embedded to build it (0 when read back)
    seconds: float = 0.0

    def rows_for(self, video_ids) -> np.ndarray:
        """Feature rows of ``video_ids`` (raises with the missing id if one is not stored)."""
        row_of = {video_id: row for row, video_id in enumerate(self.video_ids)}
        missing = [v for v in video_ids if v not in row_of]
        if missing:
            raise KeyError(f"{len(missing)} videos are not in the feature store, e.g. {missing[0]}")
        return np.array([row_of[v] for v in video_ids], dtype=np.int64)

    def read(self, rows: np.ndarray) -> np.ndarray:
        """Feature rows ``rows`` as float32 ``[len(rows), ...]``. A stored array is read with
        ``pread`` (one call per run of consecutive rows), not through its memory map: the
        store's pages then stay in the page cache, shared and reclaimable, instead of in this
        process's resident memory (an SSv2-Full map store is 4.6 GB in float16)."""
        rows = np.asarray(rows, dtype=np.int64)
        array = self.features
        if not _whole_file_map(array) or not len(rows):
            return np.asarray(array[rows], np.float32)
        out = np.empty((len(rows), *array.shape[1:]), array.dtype)  # [n, ...] stored dtype
        row_bytes = out[0].nbytes
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1  # where a run of consecutive rows ends
        fd = os.open(array.filename, os.O_RDONLY)
        try:
            for first, last in zip(
                np.r_[0, breaks], np.r_[breaks, len(rows)], strict=True
            ):  # out[first:last] holds stored rows rows[first] .. rows[first] + (last - first)
                view = memoryview(out[first:last]).cast("B")
                offset = array.offset + int(rows[first]) * row_bytes
                if os.preadv(fd, [view], offset) != len(view):
                    raise OSError(f"{array.filename} is shorter than its header says")
        finally:
            os.close(fd)
        return out.astype(np.float32, copy=False)


def _whole_file_map(array: np.ndarray) -> bool:
    """Whether ``array`` is a C-ordered memory map of a whole ``.npy`` file (as ``np.load``
    returns it), so that row ``r`` starts at ``offset + r * row bytes`` of its file."""
    if not isinstance(array, np.memmap) or array.filename is None:
        return False
    if not array.flags.c_contiguous:
        return False
    return os.path.getsize(array.filename) == array.offset + array.nbytes


def _refuse_unreadable(key: FeatureKey, unreadable: tuple[str, str] | None, error: Exception):
    """Raise the message for ``unreadable`` (``first_unreadable``'s finding), or ``error``
    itself when every video decoded (then it was not the data)."""
    if unreadable is None:
        raise error
    path, reason = unreadable
    raise FsarbenchError(
        f"video {path} cannot be decoded ({reason}): {key.benchmark} {key.split} was not embedded",
        "replace the file, or prepare the benchmark again with probing (without --no-probe), "
        "which leaves unreadable videos out and lists them",
    ) from None


def first_unreadable(dataset, indices) -> tuple[str, str] | None:
    """The first of ``indices`` whose video the dataset cannot decode, as (file, reason),
    found by reading them here in this process (a worker's exception carries only text)."""
    for index in indices:
        try:
            dataset[index]
        except Exception as error:
            info = dataset.get_data_info(index)
            where = info.get("filename") or info.get("frame_dir") or info.get("video_id")
            return str(where), f"{type(error).__name__}: {error}".strip()
    return None


def collate_clips(items: list[dict]):
    clips = torch.stack([item["inputs"] for item in items])  # [B, T, 3, H, W] uint8
    return clips, [item["data_samples"].metainfo["video_id"] for item in items]


def iter_embeddings(
    model, loader, description: str = "embedding", progress: bool = False, pooled: bool = False
):
    """Yields ``(video ids, features [B, T, ...] as float32 numpy, frames embedded, pooled)``
    for each batch of a loader built with :func:`collate_clips`; ``pooled`` (asked for with
    maps): the backbone's pooled features of the same forward as float32 numpy
    ``[B, T, C]`` (``pool_maps``), else None."""
    for clips, ids in track(loader, description=description, console=stderr, disable=not progress):
        with torch.inference_mode():
            batch = model.embed(clips)  # [B, T, C] or [B, T, C, h, w]
            batch_pooled = model.backbone.pool_maps(batch) if pooled else None  # [B, T, C]
        if batch_pooled is not None:
            batch_pooled = batch_pooled.float().cpu().numpy()
        yield ids, batch.float().cpu().numpy(), clips.shape[0] * clips.shape[1], batch_pooled


def embed_in_memory(model, loader) -> StoredFeatures:
    """Features of every video of a loader, kept in memory (validation during fine-tuning,
    where the weights change between calls and storing would only fill the disk)."""
    model.eval()
    ids, batches, frames = [], [], 0
    for batch_ids, batch, batch_frames, _ in iter_embeddings(model, loader):
        ids.extend(batch_ids)
        batches.append(batch)
        frames += batch_frames
    return StoredFeatures(None, tuple(ids), np.concatenate(batches), frame_forwards=frames)


class FeatureStore:
    """Test-time features on disk, under ``<cache>/features`` unless told otherwise."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or cache_dir() / "features"

    def folder(self, key: FeatureKey) -> Path:
        return self.root / key.benchmark / key.split / key.folder_name

    def is_embedding(self, key: FeatureKey) -> bool:
        """Whether some process holds ``key``'s lock now (embedding or writing it)."""
        return is_held(self.folder(key) / "embed.lock")

    def load(self, key: FeatureKey) -> StoredFeatures | None:
        """The stored features of ``key``, verified against their index (format, shape,
        dtype, one row per video, file size); a store that fails is removed, so it is embedded
        again, never read as it is."""
        folder = self.folder(key)
        index_file, array_file = folder / "index.json", folder / "features.npy"
        if not index_file.is_file():
            return None
        try:
            index = json.loads(index_file.read_text())
            features = np.load(array_file, mmap_mode="r")  # header and size checked here
            problem = None
            if list(features.shape) != index["shape"] or len(index["video_ids"]) != len(features):
                problem = f"shape {list(features.shape)} against the index's {index['shape']}"
            elif features.dtype != DTYPES[key.dtype]:
                problem = f"dtype {features.dtype}, the key says {key.dtype}"
            elif index.get("bytes") is not None and array_file.stat().st_size != index["bytes"]:
                problem = f"{array_file.stat().st_size} bytes, {index['bytes']} were written"
        except (OSError, ValueError, KeyError, TypeError, EOFError) as error:
            problem = f"{type(error).__name__}: {error}"
        if problem is None:
            return StoredFeatures(key, tuple(index["video_ids"]), features)
        stderr.print(
            f"the feature store {folder} is corrupt ({problem}); embedding it again", soft_wrap=True
        )
        index_file.unlink(missing_ok=True)
        array_file.unlink(missing_ok=True)
        return None

    def get_or_embed(
        self,
        key: FeatureKey,
        model,
        make_dataset: Callable[[], Dataset],
        batch_videos: int = 16,
        num_workers: int = 0,
        progress: bool = True,
    ) -> StoredFeatures:
        """The stored features of ``key``, embedded first when absent. ``make_dataset`` builds
        the split's clip dataset, called only when something must be decoded. An embedding of
        maps also writes the pooled store of the same key when the backbone pools its maps
        (``pool_maps``) and that store is absent: one forward pass for both kinds."""
        folder = self.folder(key)
        return compute_once(
            folder / "embed.lock",
            f"embedding {key.benchmark} {key.split} ({key.folder_name})",
            lambda: self.load(key),
            lambda: self._embed(key, model, make_dataset(), batch_videos, num_workers, progress),
            kind="features",
        )

    def write(self, key: FeatureKey, video_ids: list[str], features: np.ndarray) -> None:
        """Store ``features [V, ...]`` (already in ``key.dtype``) under ``key`` whole, unless
        another process stored it first: written to a partial file, then renamed, then
        indexed, so a reader sees all of it or nothing."""
        folder = self.folder(key)

        def store() -> None:
            folder.mkdir(parents=True, exist_ok=True)
            partial = folder / "features.partial.npy"
            np.save(partial, features)
            self._publish(key, partial, video_ids)

        compute_once(
            folder / "embed.lock",
            f"storing {key.benchmark} {key.split} ({key.folder_name})",
            lambda: self.load(key),
            store,
            kind="features",
        )

    def _publish(self, key: FeatureKey, partial: Path, video_ids: list[str]) -> None:
        """Rename a complete partial array into place and write its index (last: a store
        without an index does not exist)."""
        folder = self.folder(key)
        os.replace(partial, folder / "features.npy")
        shape = list(np.load(folder / "features.npy", mmap_mode="r").shape)
        index = {"key": key.__dict__, "shape": shape, "video_ids": video_ids}
        index["bytes"] = (folder / "features.npy").stat().st_size
        atomic_write_text(folder / "index.json", json.dumps(index))

    def _embed(self, key, model, dataset, batch_videos, num_workers, progress) -> StoredFeatures:
        folder = self.folder(key)
        folder.mkdir(parents=True, exist_ok=True)
        partial, state_file = folder / "features.partial.npy", folder / "progress.json"
        video_ids = [dataset.get_data_info(i)["video_id"] for i in range(len(dataset))]
        model.eval()
        try:
            first = dataset[0]["inputs"][None]  # [1, T, 3, H, W]
        except Exception as error:
            _refuse_unreadable(key, first_unreadable(dataset, [0]), error)
        with torch.inference_mode():
            # on CUDA, as many videos per batch as memory allows, measured on this one
            batch_videos = embed_batch_videos(
                lambda: model.embed(first), batch_videos, model.backbone.mean.device
            )
            probe = model.embed(first)  # [1, T, ...]
            pools_maps = model.backbone.pool_maps(probe) is not None
        shape = (len(dataset), *probe.shape[1:])
        done = 0
        if partial.is_file() and state_file.is_file():
            state = json.loads(state_file.read_text())
            if state.get("shape") == list(shape) and state.get("video_ids") == video_ids:
                done = int(state["rows_done"])
        if done:
            features = np.load(partial, mmap_mode="r+")
        else:
            features = np.lib.format.open_memmap(
                partial, mode="w+", dtype=DTYPES[key.dtype], shape=shape
            )
        # the pooled rows of the same pass, kept in memory (C per frame: small beside maps);
        # not after a resume, whose earlier rows were not kept
        pooled_key = dataclasses.replace(key, kind="pooled")
        with_pooled = (
            key.kind == "maps" and done == 0 and pools_maps and self.load(pooled_key) is None
        )
        pooled_batches = []
        loader = DataLoader(
            Subset(dataset, range(done, len(dataset))),
            batch_size=batch_videos,
            num_workers=num_workers,
            worker_init_fn=end_with_parent,
            collate_fn=collate_clips,
        )
        frame_forwards, started = 0, time.perf_counter()
        description = f"embedding {key.benchmark} {key.split} ({len(dataset) - done} videos)"
        batches = iter_embeddings(model, loader, description, progress, pooled=with_pooled)
        try:
            for ids, batch, frames, pooled in batches:
                assert ids == video_ids[done : done + len(ids)]
                features[done : done + len(ids)] = batch.astype(features.dtype)
                if with_pooled:
                    pooled_batches.append(pooled.astype(features.dtype))
                frame_forwards += frames
                done += len(ids)
                features.flush()
                atomic_write_text(
                    state_file,
                    json.dumps({"shape": list(shape), "video_ids": video_ids, "rows_done": done}),
                )
        except Exception as error:
            del features
            # the loader yields batches in order: the one that failed starts at ``done``
            unreadable = first_unreadable(
                dataset, range(done, min(done + batch_videos, len(dataset)))
            )
            if unreadable is not None:
                partial.unlink(missing_ok=True)  # no resume point before an unreadable video
                state_file.unlink(missing_ok=True)
            _refuse_unreadable(key, unreadable, error)
        del features
        self._publish(key, partial, video_ids)
        state_file.unlink(missing_ok=True)
        if with_pooled:
            self.write(pooled_key, video_ids, np.concatenate(pooled_batches))
        stored = self.load(key)
        stored.frame_forwards = frame_forwards
        stored.seconds = time.perf_counter() - started
        return stored
