"""Episode sets: seeded N-way K-shot episodes, generated once, saved, hashed, shared.

An episode set is a deterministic function of (benchmark split as prepared, protocol, seed).
It is sampled over the videos actually present (a Kinetics-100 copy with missing clips gets
its own set, and its own hash), saved as one ``.npz`` file, and read back by every method, so
all methods are scored on the very same episodes. Result records name the set's content
hash.

Within an episode the support order is shuffled (seeded), so a head that silently assumes a
class-sorted support fails loudly in tests instead of quietly in papers.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fsarbench.benchmarks.prepare import PreparedBenchmark, read_annotation
from fsarbench.errors import FsarbenchError
from fsarbench.fileio import atomic_write_bytes

EPISODE_FORMAT_VERSION = 1


@dataclass(frozen=True)
class EpisodeSpec:
    n_way: int
    k_shot: int
    queries_per_class: int
    episodes: int
    seed: int

    @property
    def name(self) -> str:
        return (
            f"{self.n_way}way-{self.k_shot}shot-{self.queries_per_class}q-"
            f"{self.episodes}ep-seed{self.seed}"
        )


@dataclass(frozen=True)
class SplitVideos:
    """The videos of one split that are present on this machine, in annotation-list order."""

    benchmark: str
    split: str
    classes: tuple[str, ...]
    video_ids: tuple[str, ...]
    labels: tuple[int, ...]  # index into classes

    @property
    def content_hash(self) -> str:
        payload = json.dumps([self.classes, self.video_ids, self.labels]).encode()
        return hashlib.sha256(payload).hexdigest()


def split_videos(prepared: PreparedBenchmark, prepared_dir: Path, split: str) -> SplitVideos:
    coverage = prepared.splits[split]
    entries = read_annotation(prepared_dir / coverage.annotation, prepared.media, coverage)
    return SplitVideos(
        prepared.benchmark,
        split,
        tuple(coverage.classes),
        tuple(e.video_id for e in entries),
        tuple(e.label for e in entries),
    )


@dataclass(frozen=True)
class EpisodeSet:
    """``support`` / ``query`` index ``video_ids``; labels are episode-local (0..N-1) and
    ``classes`` maps them to split class indices: episode e's label n is class
    ``classes[e, n]``."""

    benchmark: str
    split: str
    protocol: dict
    spec: EpisodeSpec
    video_ids: tuple[str, ...]
    class_names: tuple[str, ...]
    available_hash: str
    classes: np.ndarray  # [E, N] int32
    support: np.ndarray  # [E, N*K] int32
    support_labels: np.ndarray  # [E, N*K] int64
    query: np.ndarray  # [E, N*q] int32
    query_labels: np.ndarray  # [E, N*q] int64

    def metadata(self) -> dict:
        return {
            "format_version": EPISODE_FORMAT_VERSION,
            "benchmark": self.benchmark,
            "split": self.split,
            "protocol": self.protocol,
            "spec": self.spec.__dict__,
            "video_ids": list(self.video_ids),
            "class_names": list(self.class_names),
            "available_hash": self.available_hash,
        }

    def video_classes(self) -> np.ndarray:
        """``[V]`` the split class of every video of ``video_ids``, as its episodes label it
        (-1 for a video no episode reads)."""
        classes = np.full(len(self.video_ids), -1, dtype=np.int64)
        rows = np.arange(len(self.classes))[:, None]
        for slots, labels in ((self.support, self.support_labels), (self.query, self.query_labels)):
            classes[slots] = self.classes[rows, labels]  # [E, S] split classes
        return classes

    @property
    def content_hash(self) -> str:
        """sha256 of what the episodes are: metadata plus every index array."""
        digest = hashlib.sha256(json.dumps(self.metadata(), sort_keys=True).encode())
        for array in (
            self.classes,
            self.support,
            self.support_labels,
            self.query,
            self.query_labels,
        ):
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()

    def __len__(self) -> int:
        return len(self.support)


@dataclass(frozen=True)
class Episode:
    """One episode: indices into the split's videos; labels are episode-local (0..N-1)."""

    classes: np.ndarray  # [N] split class index of each local label
    support: np.ndarray  # [N*K], shuffled
    support_labels: np.ndarray  # [N*K]
    query: np.ndarray  # [N*q]
    query_labels: np.ndarray  # [N*q]


class EpisodeDrawer:
    """Draws episodes of one shape from a split: support and query disjoint, exactly K and q
    per class, support order shuffled. Raises if the split cannot supply the shape."""

    def __init__(self, videos: SplitVideos, n_way: int, k_shot: int, queries_per_class: int):
        self.n_way, self.k_shot, self.queries = n_way, k_shot, queries_per_class
        self.classes = videos.classes  # the split's class labels, which Episode.classes index
        need = k_shot + queries_per_class
        by_class: dict[int, list[int]] = {}
        for index, label in enumerate(videos.labels):
            by_class.setdefault(label, []).append(index)
        self.eligible = np.array(
            sorted(c for c, members in by_class.items() if len(members) >= need)
        )
        if len(self.eligible) < n_way:
            raise FsarbenchError(
                f"{videos.benchmark} {videos.split}: only {len(self.eligible)} classes have at "
                f"least {need} present videos ({k_shot} shot{'s' * (k_shot > 1)} + "
                f"{queries_per_class} quer{'ies' if queries_per_class > 1 else 'y'}), "
                f"fewer than the {n_way} ways asked for",
                "ask for fewer ways, shots or queries, or prepare the missing videos "
                "(`fsarbench ls benchmarks` shows the coverage)",
            )
        self.members = {c: np.asarray(by_class[c]) for c in self.eligible}

    def draw(self, rng: np.random.Generator) -> Episode:
        need = self.k_shot + self.queries
        chosen = rng.choice(self.eligible, size=self.n_way, replace=False)
        picks = np.stack([rng.choice(self.members[c], size=need, replace=False) for c in chosen])
        shots, queries = picks[:, : self.k_shot].reshape(-1), picks[:, self.k_shot :].reshape(-1)
        order = rng.permutation(len(shots))  # no head may rely on a class-sorted support
        local = np.arange(self.n_way)
        return Episode(
            classes=chosen,
            support=shots[order],
            support_labels=np.repeat(local, self.k_shot)[order],
            query=queries,
            query_labels=np.repeat(local, self.queries),
        )


def sample_episodes(
    videos: SplitVideos, spec: EpisodeSpec, protocol: dict | None = None
) -> EpisodeSet:
    """Draw ``spec.episodes`` episodes in sequence from one generator seeded with the seed."""
    drawer = EpisodeDrawer(videos, spec.n_way, spec.k_shot, spec.queries_per_class)
    rng = np.random.default_rng(spec.seed)
    drawn = [drawer.draw(rng) for _ in range(spec.episodes)]

    def stack(name: str, dtype) -> np.ndarray:
        width = {
            "classes": spec.n_way,
            "support": spec.n_way * spec.k_shot,
            "query": spec.n_way * spec.queries_per_class,
        }[name.removesuffix("_labels")]
        if not drawn:
            return np.empty((0, width), dtype=dtype)
        return np.stack([getattr(episode, name) for episode in drawn]).astype(dtype)

    return EpisodeSet(
        benchmark=videos.benchmark,
        split=videos.split,
        protocol=dict(protocol or {}),
        spec=spec,
        video_ids=videos.video_ids,
        class_names=videos.classes,
        available_hash=videos.content_hash,
        classes=stack("classes", np.int32),
        support=stack("support", np.int32),
        support_labels=stack("support_labels", np.int64),
        query=stack("query", np.int32),
        query_labels=stack("query_labels", np.int64),
    )


_ARRAYS = ("classes", "support", "support_labels", "query", "query_labels")


def save_episode_set(episodes: EpisodeSet, path: Path) -> str:
    buffer = io.BytesIO()
    metadata = {**episodes.metadata(), "content_hash": episodes.content_hash}
    np.savez_compressed(
        buffer,
        metadata=np.frombuffer(json.dumps(metadata).encode(), dtype=np.uint8),
        **{name: getattr(episodes, name) for name in _ARRAYS},
    )
    atomic_write_bytes(path, buffer.getvalue())
    return episodes.content_hash


def load_episode_set(path: Path) -> EpisodeSet:
    with np.load(path) as data:
        metadata = json.loads(data["metadata"].tobytes().decode())
        arrays = {name: data[name] for name in _ARRAYS}
    if metadata.get("format_version") != EPISODE_FORMAT_VERSION:
        raise FsarbenchError(f"{path} was written by another fsarbench episode format")
    episodes = EpisodeSet(
        benchmark=metadata["benchmark"],
        split=metadata["split"],
        protocol=metadata["protocol"],
        spec=EpisodeSpec(**metadata["spec"]),
        video_ids=tuple(metadata["video_ids"]),
        class_names=tuple(metadata["class_names"]),
        available_hash=metadata["available_hash"],
        **arrays,
    )
    if episodes.content_hash != metadata["content_hash"]:
        raise FsarbenchError(
            f"{path} does not match its recorded content hash (edited or damaged)",
            "delete the file; fsarbench samples the same episodes again from the seed",
        )
    return episodes


def episode_set_for(
    videos: SplitVideos, spec: EpisodeSpec, protocol: dict, folder: Path
) -> EpisodeSet:
    """The saved set for (split as present, protocol, spec), sampled and saved on first use."""
    protocol_tag = f"{protocol.get('name', 'custom')}-v{protocol.get('version', 0)}"
    path = folder / videos.split / f"{protocol_tag}-{spec.name}-{videos.content_hash[:12]}.npz"
    if path.is_file():
        try:
            return load_episode_set(path)
        except Exception as error:  # not an episode file, truncated, damaged: sampled again
            from fsarbench.console import stderr

            reason = error.problem if isinstance(error, FsarbenchError) else repr(error)
            stderr.print(
                f"episode set {path} is unreadable ({reason}); sampling it again", soft_wrap=True
            )
    episodes = sample_episodes(videos, spec, protocol)
    save_episode_set(episodes, path)
    return episodes
