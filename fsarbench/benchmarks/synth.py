"""The built-in benchmark ``synth``: procedurally generated actions written as real videos.

Each class is an ordered composition of motion primitives applied to one object ("move left,
then grow, then rotate cw"). Classes come in pairs that use the same primitives in a different
order, so a method that averages frames over time (ProtoNet) meets pairs it cannot tell apart
from frame statistics alone, while a method that aligns time can. Each video varies, by knobs
in [0, 1]:

- ``misalignment``: when the action starts and how long it lasts within the clip (duration
  misalignment; idle frames before and after);
- ``tempo_warp``: how long each sub-action takes and how it accelerates (evolution
  misalignment);
- ``spatial_jitter``: start position, motion amplitude and per-frame shake;
- ``appearance``: object shape, size and colour, background colour and texture, a distractor.

Everything is a pure function of (config, seed): one seed gives byte-identical videos and
annotation files. The output is laid out like a real benchmark (class folders of ``.mp4``
files plus ``train.list`` / ``val.list`` / ``test.list``) and goes through the same
``prepare`` code as the real benchmarks.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from fsarbench.benchmarks.prepare import MANIFEST as PREPARED_MANIFEST
from fsarbench.benchmarks.prepare import (
    PreparedBenchmark,
    load_prepared,
    prepare_benchmark,
    prepared_problem,
)
from fsarbench.benchmarks.registry import SPLITS, get_benchmark
from fsarbench.benchmarks.splits import SplitList, parse_split_text
from fsarbench.console import stderr
from fsarbench.errors import FsarbenchError
from fsarbench.fileio import install_folder, staging_folder
from fsarbench.paths import cache_dir
from fsarbench.workers import end_with_parent

# 2: x264 without macroblock-tree rate control (its output bytes varied from run to run)
GENERATOR_VERSION = 2
PRIMITIVES = (
    "move left",
    "move right",
    "move up",
    "move down",
    "rotate cw",
    "rotate ccw",
    "grow",
    "shrink",
)
SPLIT_PAIRS = {"train": 32, "val": 6, "test": 12}  # order pairs per split: 64 / 12 / 24 classes
SPLIT_FILES = {split: f"{split}.list" for split in SPLITS}
SHAPES = ("arrow", "ell", "triangle", "bar")


@dataclass(frozen=True)
class SynthConfig:
    """Everything that determines the generated benchmark; its hash names the output folder."""

    seed: int = 0
    videos_per_class: int = 30
    frames: int = 32
    size: int = 64
    fps: int = 12
    primitives_per_class: int = 3
    misalignment: float = 0.5
    tempo_warp: float = 0.5
    spatial_jitter: float = 0.5
    appearance: float = 0.5

    def validate(self) -> None:
        problems = []
        if self.videos_per_class < 2:
            problems.append("videos_per_class must be at least 2 (one support, one query)")
        if self.frames < 8:
            problems.append("frames must be at least 8 (the protocol samples 8 segments)")
        if self.size < 16 or self.size % 2:
            problems.append("size must be an even number of pixels, at least 16")
        if not 2 <= self.primitives_per_class <= len(PRIMITIVES):
            problems.append(f"primitives_per_class must be in 2..{len(PRIMITIVES)}")
        for knob in ("misalignment", "tempo_warp", "spatial_jitter", "appearance"):
            if not 0.0 <= getattr(self, knob) <= 1.0:
                problems.append(f"{knob} must be in [0, 1]")
        if self.fps < 1:
            problems.append("fps must be positive")
        if problems:
            raise FsarbenchError(
                "invalid synth settings: " + "; ".join(problems),
                "fix the --synth settings (`fsarbench data generate --help` lists each with "
                "its default)",
            )

    @property
    def fingerprint(self) -> str:
        payload = json.dumps({"version": GENERATOR_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:10]


def synth_root(config: SynthConfig) -> Path:
    return cache_dir() / "synth" / f"seed{config.seed}-{config.fingerprint}"


# --- classes -------------------------------------------------------------------------------


def class_name(primitives: tuple[str, ...]) -> str:
    return ", then ".join(primitives)


def make_classes(config: SynthConfig) -> dict[str, list[tuple[str, ...]]]:
    """Pairs of primitive sequences that differ only in order, dealt into the three splits."""
    rng = np.random.default_rng([config.seed, 0])
    n_pairs = sum(SPLIT_PAIRS.values())
    multisets = list(itertools.combinations(range(len(PRIMITIVES)), config.primitives_per_class))
    if len(multisets) < n_pairs:
        raise FsarbenchError(
            f"primitives_per_class={config.primitives_per_class} gives only {len(multisets)} "
            f"primitive sets, fewer than the {n_pairs} class pairs needed",
            "use 3 to 5 primitives per class",
        )
    chosen = rng.permutation(len(multisets))[:n_pairs]
    pairs = []
    for index in chosen:
        orders = list(itertools.permutations(multisets[index]))
        first, second = rng.choice(len(orders), size=2, replace=False)
        pairs.append(
            tuple(tuple(PRIMITIVES[i] for i in orders[k]) for k in (int(first), int(second)))
        )
    classes: dict[str, list[tuple[str, ...]]] = {}
    start = 0
    for split in SPLITS:
        count = SPLIT_PAIRS[split]
        classes[split] = [sequence for pair in pairs[start : start + count] for sequence in pair]
        start += count
    return classes


# --- rendering -----------------------------------------------------------------------------


def _shape_polygon(shape: str) -> np.ndarray:
    """Unit-size outline, centred on the origin, with no rotational symmetry under 90 degrees."""
    outlines = {
        "arrow": [
            (-1, -0.35),
            (0.2, -0.35),
            (0.2, -0.8),
            (1, 0),
            (0.2, 0.8),
            (0.2, 0.35),
            (-1, 0.35),
        ],
        "ell": [(-0.8, -1), (-0.2, -1), (-0.2, 0.4), (0.8, 0.4), (0.8, 1), (-0.8, 1)],
        "triangle": [(-0.9, -0.8), (1, 0), (-0.9, 0.8)],
        "bar": [(-1, -0.3), (1, -0.3), (1, 0.3), (-1, 0.3)],
    }
    return np.asarray(outlines[shape], dtype=np.float64)


@dataclass(frozen=True)
class VideoJob:
    path: str
    primitives: tuple[str, ...]
    seed: tuple[int, ...]


def _background(rng: np.random.Generator, config: SynthConfig) -> np.ndarray:
    size, nuisance = config.size, config.appearance
    base = 0.5 + nuisance * rng.uniform(-0.35, 0.35, size=3)
    ramp = np.linspace(-1, 1, size)
    direction = rng.uniform(0, 2 * math.pi)
    gradient = np.cos(direction) * ramp[None, :] + np.sin(direction) * ramp[:, None]
    texture = rng.normal(0, 1, size=(size // 4 + 1, size // 4 + 1, 3))
    texture = np.kron(texture, np.ones((4, 4, 1)))[:size, :size]
    image = base[None, None, :] + nuisance * (0.12 * gradient[..., None] + 0.06 * texture)
    return np.clip(image * 255, 0, 255).astype(np.uint8)


def _object_colour(rng: np.random.Generator, background: np.ndarray) -> tuple[int, int, int]:
    """A saturated colour far from the mean background colour."""
    mean = background.reshape(-1, 3).mean(0)
    best, best_gap = None, -1.0
    for _ in range(8):
        colour = rng.uniform(0, 255, size=3)
        colour[rng.integers(3)] = rng.choice([20.0, 235.0])
        gap = float(np.abs(colour - mean).sum())
        if gap > best_gap:
            best, best_gap = colour, gap
    return tuple(int(c) for c in best)


def _timeline(rng: np.random.Generator, config: SynthConfig, n_sub: int):
    """Start and end (fractions of the clip) of each sub-action, and its easing exponent."""
    duration = 1.0 - config.misalignment * rng.uniform(0.0, 0.5)
    start = rng.uniform(0.0, 1.0 - duration)
    weights = 1.0 + config.tempo_warp * rng.uniform(-0.6, 0.6, size=n_sub)
    bounds = start + duration * np.concatenate([[0.0], np.cumsum(weights) / weights.sum()])
    easing = np.exp(config.tempo_warp * rng.normal(0.0, 0.5, size=n_sub))
    return bounds, easing


def render_video(job: VideoJob, config: SynthConfig) -> np.ndarray:
    """Frames ``[T, H, W, 3]`` uint8 (RGB) of one video."""
    import cv2

    rng = np.random.default_rng(list(job.seed))
    size, jitter, nuisance = config.size, config.spatial_jitter, config.appearance
    background = _background(rng, config)
    colour = _object_colour(rng, background)
    shape = SHAPES[rng.integers(len(SHAPES))] if nuisance > 0 else SHAPES[0]
    outline = _shape_polygon(shape)
    radius = size * 0.13 * (1 + nuisance * rng.uniform(-0.25, 0.25))
    centre = np.array([size / 2, size / 2]) + jitter * rng.uniform(-0.12, 0.12, 2) * size
    angle = rng.uniform(0, 2 * math.pi) if nuisance > 0 else 0.0
    step = size * 0.22 * (1 + jitter * rng.uniform(-0.25, 0.25, len(job.primitives)))
    distractor = None
    if rng.uniform() < nuisance:
        distractor_outline = _shape_polygon(SHAPES[rng.integers(len(SHAPES))])
        where = rng.uniform(0.1, 0.9, 2) * size
        distractor_colour = tuple(int(c) for c in rng.uniform(0, 255, 3))
        distractor = (distractor_outline * size * 0.07 + where, distractor_colour)
    bounds, easing = _timeline(rng, config, len(job.primitives))

    moves = {"move left": (-1, 0), "move right": (1, 0), "move up": (0, -1), "move down": (0, 1)}
    frames = np.empty((config.frames, size, size, 3), dtype=np.uint8)
    shift = 4  # cv2 draws with 1/16-pixel precision
    for index in range(config.frames):
        time = index / (config.frames - 1)
        position, rotation, scale = centre.copy(), angle, 1.0
        for k, primitive in enumerate(job.primitives):
            progress = np.clip((time - bounds[k]) / (bounds[k + 1] - bounds[k]), 0.0, 1.0)
            progress = progress ** easing[k]
            if primitive in moves:
                position += progress * step[k] * np.asarray(moves[primitive], dtype=np.float64)
            elif primitive == "rotate cw":
                rotation += progress * math.pi / 2
            elif primitive == "rotate ccw":
                rotation -= progress * math.pi / 2
            elif primitive == "grow":
                scale *= 1.0 + 0.7 * progress
            elif primitive == "shrink":
                scale /= 1.0 + 0.7 * progress
        position += jitter * rng.normal(0.0, 0.4, 2)
        rotate = np.array(
            [[math.cos(rotation), -math.sin(rotation)], [math.sin(rotation), math.cos(rotation)]]
        )
        points = outline @ rotate.T * radius * scale + position  # [V, 2] pixel coordinates
        frame = background.copy()
        if distractor is not None:
            cv2.fillPoly(
                frame,
                [np.round(distractor[0] * 16).astype(np.int32)],
                distractor[1],
                cv2.LINE_AA,
                shift,
            )
        cv2.fillPoly(frame, [np.round(points * 16).astype(np.int32)], colour, cv2.LINE_AA, shift)
        frames[index] = frame
    return frames


def encode_video(frames: np.ndarray, path: Path, fps: int) -> None:
    """Write ``[T, H, W, 3]`` RGB frames as H.264 (MPEG-4 part 2 where PyAV lacks libx264)
    so that the bytes are a function of the frames alone: one thread, and no macroblock-tree
    rate control (with it, a few videos in every 300 came out different when the same frames
    were encoded again; tests/test_synth.py encodes 300 videos twice)."""
    import av

    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1
        if codec == "libx264":
            stream.options = {
                "crf": "18",
                "preset": "veryfast",
                "threads": "1",
                "x264-params": "mbtree=0",
            }
        else:
            stream.options = {"qscale": "2"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _make_video(job: VideoJob, config: SynthConfig) -> None:
    encode_video(render_video(job, config), Path(job.path), config.fps)


def _make_videos(jobs: list[VideoJob], config: SynthConfig, progress: bool) -> None:
    """Render and encode in worker processes; each video depends only on its own seed."""
    from rich.progress import track

    workers = max(1, os.cpu_count() or 1)
    # the workers end with this process, even when it is killed (SIGKILL)
    with ProcessPoolExecutor(workers, initializer=end_with_parent) as pool:
        finished = pool.map(_make_video, jobs, itertools.repeat(config), chunksize=16)
        for _ in track(
            finished,
            total=len(jobs),
            description="generating synth videos",
            console=stderr,
            disable=not progress,
        ):
            pass


# --- the benchmark on disk -----------------------------------------------------------------


def plan_videos(config: SynthConfig, videos_dir: Path):
    """Split lines and video jobs; ids are opaque (a seeded shuffle), as in real benchmarks."""
    classes = make_classes(config)
    total = sum(len(c) for c in classes.values()) * config.videos_per_class
    ids = np.random.default_rng([config.seed, 1]).permutation(total)
    lines: dict[str, list[str]] = {split: [] for split in SPLITS}
    jobs: list[VideoJob] = []
    counter = 0
    for split in SPLITS:
        for class_index, primitives in enumerate(classes[split]):
            name = class_name(primitives)
            for video in range(config.videos_per_class):
                video_id = f"v{ids[counter]:05d}"
                counter += 1
                lines[split].append(f"{name}/{video_id}")
                seed = (config.seed, SPLITS.index(split), class_index, video)
                path = videos_dir / name / f"{video_id}.mp4"
                jobs.append(VideoJob(str(path), primitives, seed))
    return lines, jobs


def generate_synth(
    config: SynthConfig | None = None, force: bool = False, progress: bool = True
) -> Path:
    """Generate the benchmark into the cache (once) and prepare it; returns its folder.

    Any number of processes may ask at once: one generates (under the folder's stage lock),
    the others wait and find it prepared."""
    from fsarbench.locks import compute_once

    config = config or SynthConfig()
    config.validate()
    final = synth_root(config)
    prepared = final / "prepared" / PREPARED_MANIFEST
    if force:
        prepared.unlink(missing_ok=True)

    def reuse() -> Path | None:
        if not prepared.is_file():
            return None
        problem = prepared_problem(prepared.parent)
        if problem is None:
            return final
        # fsarbench's own output, and reproducible from the settings: made again
        stderr.print(f"{problem}: generating {final.name} again", soft_wrap=True)
        return None

    return compute_once(
        final.with_name(f".{final.name}.lock"),
        f"generating {final.name}",
        reuse,
        lambda: _generate(config, final, progress),
        kind="data",
    )


def _generate(config: SynthConfig, final: Path, progress: bool) -> Path:
    staging = staging_folder(final)
    try:
        videos_dir = staging / "videos"
        lines, jobs = plan_videos(config, videos_dir)
        for name in {Path(job.path).parent for job in jobs}:
            name.mkdir(parents=True, exist_ok=True)
        _make_videos(jobs, config, progress)
        (staging / "splits").mkdir()
        for split in SPLITS:
            text = "".join(line + "\n" for line in lines[split])
            (staging / "splits" / SPLIT_FILES[split]).write_text(text)
        (staging / "config.json").write_text(
            json.dumps({"generator_version": GENERATOR_VERSION, **asdict(config)}, indent=2) + "\n"
        )
        install_folder(staging, final)
    except BaseException:
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
        raise
    # Prepared through the same code as a real benchmark, in place (paths are relative).
    prepare_benchmark(
        get_benchmark("synth"),
        load_synth_splits(final),
        final / "videos",
        final / "prepared",
        probe=True,
        progress=progress,
    )
    return final


def load_synth_splits(root: Path) -> dict[str, SplitList]:
    lists = {}
    for split in SPLITS:
        path = root / "splits" / SPLIT_FILES[split]
        lists[split] = SplitList(split, tuple(parse_split_text(path.read_text(), str(path))))
    return lists


def ensure_synth(config: SynthConfig | None = None, progress: bool = True) -> PreparedBenchmark:
    """What the main command calls: the prepared synth benchmark, generated on first use."""
    root = generate_synth(config, progress=progress)
    return load_prepared(root / "prepared")
