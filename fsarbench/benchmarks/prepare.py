"""Match split ids to the user's video files and write MMAction2 annotation lists.

The output of ``prepare`` is the same for every benchmark, the built-in ``synth`` included:

- ``{split}.txt``: an MMAction2 annotation list, tab-delimited because class folders and clip
  names contain spaces: ``<path relative to the data root>\\t<label>`` for videos
  (``VideoDataset(delimiter='\\t')`` reads it), ``<frame folder>\\t<frames>\\t<label>`` for frame
  folders;
- ``prepared.json``: the data root, media kind, the class list of each split (label ``i`` is
  ``classes[i]``) and the coverage report (present / missing / unusable / unexpected).

Missing videos are reported, never replaced: Kinetics-100 always misses some YouTube clips.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rich.progress import track

from fsarbench.benchmarks.registry import SPLITS, Benchmark
from fsarbench.benchmarks.splits import SplitList, _unsafe_path_part, natural_key
from fsarbench.console import stderr
from fsarbench.errors import FsarbenchError
from fsarbench.fileio import install_folder, staging_folder

if TYPE_CHECKING:
    from fsarbench.benchmarks.synth import SynthConfig

MANIFEST = "prepared.json"
FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png")
FRAME_TEMPLATE = "img_{:05}.jpg"  # MMAction2's default for RawFrameDecode
MEDIA = ("video", "frames")
EXAMPLES_KEPT = 20  # per split and kind, in the report
PREPARE_AGAIN = (
    "prepare the benchmark again (`fsarbench data prepare`; for synth, `fsarbench data generate "
    "synth --force` with the same settings)"
)


@dataclass
class SplitCoverage:
    split: str
    classes: list[str]
    expected: int
    present: int = 0
    missing: int = 0
    unusable: int = 0
    unexpected: int = 0
    missing_examples: list[str] = field(default_factory=list)
    unusable_examples: list[dict] = field(default_factory=list)  # {"path", "reason"}
    unexpected_examples: list[str] = field(default_factory=list)
    annotation: str = ""
    sha256: str = ""  # of the annotation list as written: checked whenever it is read back

    @property
    def coverage(self) -> float:
        return self.present / self.expected if self.expected else 0.0


@dataclass
class PreparedBenchmark:
    benchmark: str
    media: str
    data_root: str  # absolute, or relative to the prepared folder when the media live beside it
    probed: bool
    splits: dict[str, SplitCoverage]
    unassigned: int = 0  # media files under data_root that belong to no split's classes
    unassigned_examples: list[str] = field(default_factory=list)
    # sha256 over every prepared video's relative path and size (frame folders: their frame
    # counts are in the lists already): with the lists' bytes, the data's identity in every
    # stage key, which does not depend on where the data folder is mounted
    media_digest: str = ""

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> PreparedBenchmark:
        splits = {name: SplitCoverage(**value) for name, value in data["splits"].items()}
        return cls(**{**data, "splits": splits})


@dataclass(frozen=True)
class Probe:
    ok: bool
    frames: int
    reason: str = ""


def probe_video(path: Path) -> Probe:
    """Open a video with PyAV and decode its first frame.

    PyAV raises clean exceptions on broken files, where decord logs through FFmpeg; a video with
    a header but no decodable frame is as unusable as a corrupt one.
    """
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return Probe(False, 0, "no video stream")
            stream = container.streams.video[0]
            first = next(container.decode(stream), None)
            if first is None:
                return Probe(False, 0, "no decodable frame (zero-frame video)")
            frames = stream.frames
            if not frames and stream.duration and stream.average_rate:
                frames = int(stream.duration * stream.time_base * stream.average_rate)
            return Probe(True, max(int(frames), 1))
    except EOFError:  # av.error.EOFError too: the stream ends before its first frame
        return Probe(False, 0, "no decodable frame (zero-frame video)")
    except (av.error.FFmpegError, OSError, ValueError, StopIteration) as error:
        return Probe(False, 0, f"cannot be decoded ({type(error).__name__}: {error})")


def probe_frames(folder: Path) -> Probe:
    count = sum(1 for p in folder.iterdir() if p.suffix.lower() in FRAME_EXTENSIONS)
    if count == 0:
        return Probe(False, 0, "frame folder holds no images")
    first = folder / FRAME_TEMPLATE.format(1)
    if not first.is_file():
        return Probe(
            False, 0, f"frame folder has no {first.name} (frames must be img_00001.jpg...)"
        )
    return Probe(True, count)


def scan_media(root: Path, media: str, extensions: Iterable[str]) -> dict[str, str]:
    """Map 'relative path without extension' -> 'relative path' for every candidate under root."""
    index: dict[str, str] = {}
    extensions = tuple(extensions)
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        relative_folder = Path(folder).relative_to(root)
        if media == "frames":
            if any(name.lower().endswith(FRAME_EXTENSIONS) for name in files):
                key = relative_folder.as_posix()
                index[key] = key
            continue
        for name in sorted(files):
            stem, extension = os.path.splitext(name)
            if extension.lower() in extensions:
                key = (relative_folder / stem).as_posix()
                index.setdefault(key, (relative_folder / name).as_posix())
    return index


def _class_of_path(relative: str) -> str | None:
    head, _, _ = relative.partition("/")
    return head if head != relative else None


def prepare_benchmark(
    benchmark: Benchmark,
    lists: dict[str, SplitList],
    data_root: Path,
    out_dir: Path,
    media: str = "video",
    probe: bool = True,
    progress: bool = True,
) -> PreparedBenchmark:
    """Match, probe and write annotation lists into ``out_dir`` (replaced as a whole)."""
    if media not in MEDIA:
        raise FsarbenchError(f"unknown media kind {media!r}", f"use one of {', '.join(MEDIA)}")
    data_root = data_root.expanduser().resolve()
    if not data_root.is_dir():
        flag = "--frames" if media == "frames" else "--videos"
        raise FsarbenchError(
            f"{flag} {data_root}: no such folder",
            f"name the folder that holds the {benchmark.name} "
            f"{'frame folders' if media == 'frames' else 'videos'} "
            f"({benchmark.layout.description})",
        )
    index = scan_media(data_root, media, benchmark.layout.extensions)
    if not index:
        raise FsarbenchError(
            f"{data_root} holds no {'frame folders' if media == 'frames' else 'videos'} "
            f"({', '.join(benchmark.layout.extensions) if media == 'video' else 'img_*.jpg'})",
            f"expected layout: {benchmark.layout.description}",
        )

    claimed: set[str] = set()
    matched: dict[str, list[tuple[int, str]]] = {}  # split -> [(label, relative path)]
    report: dict[str, SplitCoverage] = {}
    for split in SPLITS:
        split_list = lists[split]
        classes = split_list.classes
        label_of = {name: label for label, name in enumerate(classes)}
        coverage = SplitCoverage(split, classes, expected=split_list.n_videos)
        found = []
        for entry in split_list.entries:
            candidates = benchmark.layout.candidates(entry.class_name, entry.video_id)
            hit = next((index[c] for c in candidates if c in index), None)
            if hit is None:
                coverage.missing += 1
                if len(coverage.missing_examples) < EXAMPLES_KEPT:
                    coverage.missing_examples.append(f"{entry.class_name}/{entry.video_id}")
                continue
            claimed.add(hit)
            found.append((label_of[entry.class_name], hit))
        matched[split] = found
        report[split] = coverage

    # Media files no split asked for: per split where their class folder names a split class.
    class_split = {}
    for split in SPLITS:
        for name in lists[split].classes:
            class_split[name] = split
            class_split[name.replace(" ", "_")] = split
    # Media that live beside the prepared folder (synth) are recorded relatively, so the same
    # seed gives byte-identical files wherever the cache is, and the folder can move.
    beside = data_root.parent == out_dir.resolve().parent
    recorded_root = f"../{data_root.name}" if beside else str(data_root)
    prepared = PreparedBenchmark(benchmark.name, media, recorded_root, probe, report)
    for relative in sorted(set(index.values()) - claimed, key=natural_key):
        owner = class_split.get(_class_of_path(relative) or "")
        if owner is None:
            prepared.unassigned += 1
            if len(prepared.unassigned_examples) < EXAMPLES_KEPT:
                prepared.unassigned_examples.append(relative)
        else:
            report[owner].unexpected += 1
            if len(report[owner].unexpected_examples) < EXAMPLES_KEPT:
                report[owner].unexpected_examples.append(relative)

    probes = _probe_all(data_root, matched, media, probe, progress)
    staging = staging_folder(out_dir)
    media_digest = hashlib.sha256()
    try:
        for split in SPLITS:
            coverage = report[split]
            lines = []
            for label, relative in matched[split]:
                result = probes.get(relative, Probe(True, 0))
                if not result.ok:
                    coverage.unusable += 1
                    if len(coverage.unusable_examples) < EXAMPLES_KEPT:
                        coverage.unusable_examples.append(
                            {"path": relative, "reason": result.reason}
                        )
                    continue
                coverage.present += 1
                if media == "frames":
                    lines.append(f"{relative}\t{result.frames}\t{label}")
                else:
                    lines.append(f"{relative}\t{label}")
            coverage.annotation = f"{split}.txt"
            written = "".join(line + "\n" for line in lines).encode()
            (staging / coverage.annotation).write_bytes(written)
            coverage.sha256 = hashlib.sha256(written).hexdigest()
            if media == "video":
                for line in lines:
                    relative = line.split("\t", 1)[0]
                    size = (data_root / relative).stat().st_size
                    media_digest.update(f"{relative}\t{size}\n".encode())
        prepared.media_digest = media_digest.hexdigest()
        (staging / MANIFEST).write_text(json.dumps(prepared.to_json(), indent=2) + "\n")
        install_folder(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    prepared.data_root = str(data_root)
    return prepared


def _probe_all(
    root: Path, matched: dict[str, list[tuple[int, str]]], media: str, probe: bool, progress: bool
) -> dict[str, Probe]:
    paths = [relative for split in SPLITS for _, relative in matched[split]]
    if media == "frames":
        # Frame counts go into the annotation list, so frame folders are always counted.
        return {relative: probe_frames(root / relative) for relative in paths}
    if not probe:
        return {}
    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        results = pool.map(lambda relative: probe_video(root / relative), paths)
        probes = {}
        for relative, result in track(
            zip(paths, results, strict=True),
            total=len(paths),
            description="probing videos",
            console=stderr,
            disable=not progress,
        ):
            probes[relative] = result
    return probes


@dataclass(frozen=True)
class AnnotationEntry:
    relative: str  # path under the data root
    video_id: str  # the benchmark's id: file name without extension, or frame folder name
    label: int  # index into the split's classes
    frames: int | None  # frame count of a frame folder; None for videos


def read_annotation(
    path: Path, media: str, coverage: SplitCoverage | None = None
) -> list[AnnotationEntry]:
    """Parse an annotation list written by :func:`prepare_benchmark` (tab-delimited), checked
    before anything reads it: bytes as the manifest recorded them (``coverage``), UTF-8, each
    line ``path<TAB>[frames<TAB>]label`` with a path inside the data folder, a label of one of
    the split's classes, and no video twice (it would be both support and query of an
    episode)."""
    fix = PREPARE_AGAIN
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FsarbenchError(f"the prepared list {path} is missing", fix) from None
    if (
        coverage is not None
        and coverage.sha256
        and hashlib.sha256(data).hexdigest() != coverage.sha256
    ):
        raise FsarbenchError(
            f"the prepared list {path} is not the one `prepare` wrote (its sha256 differs from "
            "the manifest's): changed or corrupt",
            fix,
        )
    classes = len(coverage.classes) if coverage is not None else None
    return list(_parse_annotation(str(path), data, media, classes))


# A suite reads the same lists for every run it resolves: each parse is kept by content (the
# bytes are read and hashed every time; only the checks of identical bytes are not redone).
@functools.lru_cache(maxsize=64)
def _parse_annotation(
    path: str, data: bytes, media: str, classes: int | None
) -> tuple[AnnotationEntry, ...]:
    fix = PREPARE_AGAIN
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise FsarbenchError(f"the prepared list {path} is not UTF-8 ({error})", fix) from None
    entries: list[AnnotationEntry] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"{path}, line {number}: {line!r}"
        fields = line.split("\t")
        if len(fields) != (3 if media == "frames" else 2) or not all(
            f.isdigit() for f in fields[1:]
        ):
            shape = "path<TAB>frames<TAB>label" if media == "frames" else "path<TAB>label"
            raise FsarbenchError(f"{where} is not of the form {shape}", fix)
        relative, label = fields[0], int(fields[-1])
        if _unsafe_path_part(relative):
            raise FsarbenchError(f"{where} would read outside the data folder", fix)
        if classes is not None and label >= classes:
            raise FsarbenchError(
                f"{where} has label {label}, but the split has {classes} classes", fix
            )
        if relative in seen:
            raise FsarbenchError(
                f"{where} repeats {relative} (first on line {seen[relative]}): the video would "
                "be support and query of one episode",
                fix,
            )
        seen[relative] = number
        name = relative.rsplit("/", 1)[-1]
        if media == "frames":
            entries.append(AnnotationEntry(relative, name, label, int(fields[1])))
        else:
            entries.append(AnnotationEntry(relative, os.path.splitext(name)[0], label, None))
    return tuple(entries)


def load_prepared(folder: Path) -> PreparedBenchmark:
    """Read a prepared manifest; ``data_root`` comes back absolute. A manifest that is not
    what ``prepare`` writes (truncated, edited, another program's) is refused, naming it."""
    path = folder / MANIFEST
    try:
        prepared = PreparedBenchmark.from_json(json.loads(path.read_text()))
    except (ValueError, TypeError, KeyError, AttributeError) as error:  # JSON, fields, types
        raise FsarbenchError(
            f"{path} is not a prepared-benchmark manifest ({type(error).__name__}: {error})",
            PREPARE_AGAIN,
        ) from None
    prepared.data_root = str((folder / prepared.data_root).resolve())
    return prepared


def prepared_problem(folder: Path) -> str | None:
    """Why the prepared benchmark in ``folder`` cannot be read back (its manifest or a list
    corrupt or changed), or None when it is intact."""
    try:
        prepared = load_prepared(folder)
        for coverage in prepared.splits.values():
            read_annotation(folder / coverage.annotation, prepared.media, coverage)
    except FsarbenchError as error:
        return error.problem
    return None


def format_coverage(prepared: PreparedBenchmark) -> str:
    """The coverage report as plain text lines (the CLI prints it, tests read it)."""
    lines = [
        f"{prepared.benchmark}: {'frame folders' if prepared.media == 'frames' else 'videos'} "
        f"under {prepared.data_root}"
        + ("" if prepared.probed or prepared.media == "frames" else " (not probed)")
    ]
    header = f"  {'split':<6}{'classes':>8}{'expected':>10}{'present':>9}{'missing':>9}"
    lines.append(header + f"{'unusable':>10}{'unexpected':>12}{'coverage':>10}")
    for coverage in prepared.splits.values():
        lines.append(
            f"  {coverage.split:<6}{len(coverage.classes):>8}{coverage.expected:>10}"
            f"{coverage.present:>9}{coverage.missing:>9}{coverage.unusable:>10}"
            f"{coverage.unexpected:>12}{coverage.coverage:>10.1%}"
        )
    if prepared.unassigned:
        lines.append(f"  {prepared.unassigned} media files belong to no split (ignored)")
    for coverage in prepared.splits.values():
        for item in coverage.unusable_examples:
            lines.append(f"  unusable ({coverage.split}): {item['path']}: {item['reason']}")
        if coverage.missing:
            shown = ", ".join(coverage.missing_examples[:5])
            more = coverage.missing - min(5, coverage.missing)
            lines.append(
                f"  missing ({coverage.split}): {shown}" + (f" and {more} more" if more else "")
            )
    return "\n".join(lines)


def prepared_folder(benchmark: Benchmark, synth: SynthConfig | None = None) -> Path:
    """Where ``fsarbench data prepare`` (or the synth generator) puts a benchmark's lists.

    ``synth`` selects generator settings other than the defaults (only for ``synth``).
    """
    if benchmark.is_synthetic:
        from fsarbench.benchmarks.synth import SynthConfig, synth_root

        return synth_root(synth or SynthConfig()) / "prepared"
    if synth is not None:
        raise FsarbenchError(f"synth settings were given for {benchmark.name}, a real benchmark")
    from fsarbench.paths import benchmark_dir

    return benchmark_dir(benchmark.name) / "prepared"


def require_prepared(
    benchmark: Benchmark, synth: SynthConfig | None = None
) -> tuple[PreparedBenchmark, Path]:
    folder = prepared_folder(benchmark, synth)
    if not (folder / MANIFEST).is_file():
        if benchmark.is_synthetic:
            fix = f"run `fsarbench data generate {benchmark.name}` (with the same settings)"
        else:
            fix = (
                f"run `fsarbench data splits {benchmark.name}`, then "
                f"`fsarbench data prepare {benchmark.name} --videos DIR`"
            )
        raise FsarbenchError(f"{benchmark.name} is not prepared on this machine", fix)
    return load_prepared(folder), folder
