"""Stand-in video trees: tiny real videos laid out and named exactly like a real benchmark.

No real dataset can be downloaded where fsarbench is tested, so the code path for real
benchmarks (matching split ids to files, probing, annotation lists, decoding) runs on these.
Each class gets its own flat colour, so a stand-in is also a trivially separable benchmark.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np

from fsarbench.benchmarks.prepare import FRAME_TEMPLATE
from fsarbench.benchmarks.registry import SPLITS, Benchmark
from fsarbench.benchmarks.splits import SplitEntry, SplitList


def _codec_for(path: Path) -> str:
    return "libvpx" if path.suffix.lower() == ".webm" else "mpeg4"


def write_tiny_video(path: Path, colour: tuple[int, int, int], frames: int = 12, size: int = 32):
    """A short clip in the container that ``path``'s extension names (mp4, webm, avi, mkv)."""
    import av

    codec = _codec_for(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=8)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1
        for index in range(frames):
            image = np.empty((size, size, 3), dtype=np.uint8)
            image[:] = colour
            image[:, : (index * size) // frames] //= 2  # a moving edge, so frames differ
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_zero_frame_video(path: Path) -> None:
    """A valid container with a video stream and no frame in it."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(_codec_for(path), rate=8)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        container.start_encoding()  # writes the header: without it PyAV writes no file at all


def write_frame_folder(
    folder: Path, colour: tuple[int, int, int], frames: int = 12, size: int = 32
):
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    for index in range(frames):
        image = np.empty((size, size, 3), dtype=np.uint8)
        image[:] = colour
        image[:, : (index * size) // frames] //= 2
        cv2.imwrite(str(folder / FRAME_TEMPLATE.format(index + 1)), image[..., ::-1])


def class_colour(index: int) -> tuple[int, int, int]:
    rng = np.random.default_rng(index)
    return tuple(int(c) for c in rng.integers(40, 216, size=3))


def pick_entries(lists: dict[str, SplitList], classes_per_split: int, per_class: int):
    """The first ``per_class`` videos of the first ``classes_per_split`` classes of each split."""
    chosen: dict[str, list[SplitEntry]] = {}
    for split in SPLITS:
        keep = set(lists[split].classes[:classes_per_split])
        taken: dict[str, int] = {}
        chosen[split] = []
        for entry in lists[split].entries:
            if entry.class_name in keep and taken.get(entry.class_name, 0) < per_class:
                taken[entry.class_name] = taken.get(entry.class_name, 0) + 1
                chosen[split].append(entry)
    return chosen


def make_standin_tree(
    benchmark: Benchmark,
    lists: dict[str, SplitList],
    root: Path,
    *,
    classes_per_split: int = 5,
    per_class: int = 3,
    pattern: str | None = None,
    extension: str | None = None,
    media: str = "video",
) -> dict[str, list[SplitEntry]]:
    """Write stand-ins for a subset of each split, named as ``pattern`` (default: the layout's
    first) with ``extension`` (default: the layout's first); returns the entries written."""
    pattern = pattern or benchmark.layout.patterns[0]
    extension = extension or benchmark.layout.extensions[0]
    chosen = pick_entries(lists, classes_per_split, per_class)
    templates: dict[str, Path] = {}  # one encoded clip per class, hard-linked for the others
    for split in SPLITS:
        for entry in chosen[split]:
            underscored = entry.class_name.replace(" ", "_")
            relative = pattern.format(id=entry.video_id, cls=entry.class_name, cls_=underscored)
            colour = class_colour(hash_name(entry.class_name))
            if media == "frames":
                write_frame_folder(root / relative, colour)
                continue
            target = root / (relative + extension)
            target.parent.mkdir(parents=True, exist_ok=True)
            template = templates.get(entry.class_name)
            if template is None:
                write_tiny_video(target, colour)
                templates[entry.class_name] = target
            else:
                try:
                    os.link(template, target)
                except OSError:
                    shutil.copyfile(template, target)
    return chosen


def hash_name(name: str) -> int:
    """A stable small integer for a class name (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")
