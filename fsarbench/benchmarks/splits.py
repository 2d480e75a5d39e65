"""Split lists: parse, verify against the pinned checksums and counts, fetch or import, store.

A split list has one ``<class>/<video id>`` per line. Lines are split on the **last** ``/``:
class names contain spaces and punctuation, ids never contain ``/``. Class names and ids also
become parts of file paths (class folders, video files), so anything that could leave the
videos folder (``..``, an absolute path, a backslash) is refused as malformed.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fsarbench.benchmarks.registry import SPLITS, Benchmark
from fsarbench.errors import FsarbenchError
from fsarbench.fileio import install_folder, staging_folder
from fsarbench.paths import benchmark_dir

MANIFEST = "splits.json"
DOWNLOAD_TIMEOUT_S = 30


@dataclass(frozen=True)
class SplitEntry:
    class_name: str
    video_id: str


@dataclass(frozen=True)
class SplitList:
    split: str
    entries: tuple[SplitEntry, ...]

    @property
    def classes(self) -> list[str]:
        """Class names in natural order (``train2`` before ``train10``): label i is classes[i]."""
        return sorted({entry.class_name for entry in self.entries}, key=natural_key)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def n_videos(self) -> int:
        return len(self.entries)


def natural_key(text: str) -> list[tuple[int, int | str]]:
    """Sort key that orders the digit runs of a name by value."""
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", text)]


def _unsafe_path_part(text: str) -> bool:
    parts = text.split("/")
    return (
        text.startswith("/")
        or "\\" in text
        or "\x00" in text
        or any(part in ("", ".", "..") for part in parts)
    )


def parse_split_text(text: str, origin: str) -> list[SplitEntry]:
    """Parse one split list; ``origin`` names the file in error messages."""
    if not text:
        raise FsarbenchError(f"{origin} is empty", "pass the split list itself, one video a line")
    if not text.endswith("\n"):
        text += "\n"
    entries: list[SplitEntry] = []
    seen_ids: dict[str, int] = {}
    for number, line in enumerate(text.split("\n")[:-1], start=1):
        where = f"{origin}, line {number}: {line!r}"
        fix = "each line must be <class>/<video id>; restore the file from its pinned source"
        if "\r" in line:
            raise FsarbenchError(f"{where} has a carriage return (CRLF line ends)", fix)
        if line != line.strip() or not line:
            raise FsarbenchError(f"{where} is empty or has leading/trailing whitespace", fix)
        class_name, slash, video_id = line.rpartition("/")
        if not slash or not class_name or not video_id:
            raise FsarbenchError(f"{where} is not of the form <class>/<video id>", fix)
        if _unsafe_path_part(class_name) or _unsafe_path_part(video_id):
            raise FsarbenchError(
                f"{where} would address a path outside the videos folder ('..', '/', '\\')", fix
            )
        if video_id in seen_ids:
            raise FsarbenchError(
                f"{where} repeats video id {video_id!r} (first on line {seen_ids[video_id]})", fix
            )
        seen_ids[video_id] = number
        entries.append(SplitEntry(class_name, video_id))
    return entries


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_split_file(
    benchmark: Benchmark, split: str, path: Path, origin: str | None = None
) -> SplitList:
    """Parse ``path`` and check it is byte-for-byte the pinned list with the expected counts.

    ``origin`` names the file in messages when ``path`` is a staged copy of it.
    """
    expected = benchmark.split_file(split)
    origin = origin or str(path)
    try:
        text = path.read_bytes().decode("ascii")
    except UnicodeDecodeError as error:
        raise FsarbenchError(
            f"{origin} is not ASCII text (byte {error.start})",
            f"the {benchmark.name} split lists are ASCII; restore {expected.filename} from "
            f"{expected.url}",
        ) from None
    entries = parse_split_text(text, origin)
    actual = sha256_of(path)
    if actual != expected.sha256:
        raise FsarbenchError(
            f"{origin} has sha256 {actual}, but the pinned {benchmark.name} {split} list "
            f"has {expected.sha256}",
            f"use the unmodified file from {expected.url}; results on edited split lists are "
            "not comparable with published ones (missing videos are handled later, by "
            "`fsarbench data prepare`, which reports them)",
        )
    split_list = SplitList(split, tuple(entries))
    if (split_list.n_classes, split_list.n_videos) != (expected.n_classes, expected.n_videos):
        raise FsarbenchError(
            f"{origin}: {split_list.n_classes} classes / {split_list.n_videos} videos, expected "
            f"{expected.n_classes} / {expected.n_videos}",
            "the registry and the pinned checksum disagree: please report this as a bug",
        )
    return split_list


def check_disjoint(splits: dict[str, SplitList], origin: str) -> None:
    """No class and no video may appear in two splits of one benchmark."""
    owner_of_class: dict[str, str] = {}
    owner_of_video: dict[str, str] = {}
    for split, split_list in splits.items():
        for entry in split_list.entries:
            for owners, key, what in (
                (owner_of_class, entry.class_name, "class"),
                (owner_of_video, entry.video_id, "video"),
            ):
                first = owners.setdefault(key, split)
                if first != split:
                    raise FsarbenchError(
                        f"{origin}: {what} {key!r} is in both the {first} and the {split} split",
                        "few-shot splits must be disjoint; check the split lists",
                    )


@dataclass(frozen=True)
class StoredSplits:
    benchmark: Benchmark
    folder: Path
    lists: dict[str, SplitList]


def splits_folder(benchmark: Benchmark) -> Path:
    return benchmark_dir(benchmark.name) / "splits"


def _write_manifest(folder: Path, benchmark: Benchmark, lists: dict[str, SplitList], origin: str):
    manifest = {
        "benchmark": benchmark.name,
        "origin": origin,
        "files": {
            split: {
                "filename": benchmark.split_file(split).filename,
                "sha256": benchmark.split_file(split).sha256,
                "url": benchmark.split_file(split).url,
                "classes": lists[split].n_classes,
                "videos": lists[split].n_videos,
            }
            for split in SPLITS
        },
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


Fetcher = Callable[[str, Path], None]


def download(url: str, destination: Path) -> None:
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
        destination.write_bytes(response.read())


def store_splits(
    benchmark: Benchmark, source_dir: Path | None = None, fetch: Fetcher = download
) -> StoredSplits:
    """Import the split lists from ``source_dir`` (or download them), verify, and store them.

    Everything is verified in a staging folder beside the destination; only a complete,
    verified set replaces what was there.
    """
    if benchmark.is_synthetic:
        raise FsarbenchError(
            f"{benchmark.name} has no split lists to fetch: it is generated",
            f"run `fsarbench data generate {benchmark.name}`",
        )
    if source_dir is not None and not source_dir.is_dir():
        raise FsarbenchError(
            f"--from {source_dir}: no such folder",
            f"name the folder that holds {', '.join(f.filename for f in benchmark.splits)}",
        )
    if source_dir is not None:
        absent = [f.filename for f in benchmark.splits if not (source_dir / f.filename).is_file()]
        if absent:
            raise FsarbenchError(
                f"--from {source_dir}: {', '.join(absent)} {'is' if len(absent) == 1 else 'are'} "
                "missing",
                f"copy {benchmark.name}'s split files from {benchmark.source} into that folder",
            )
    final = splits_folder(benchmark)
    staging = staging_folder(final)
    try:
        lists: dict[str, SplitList] = {}
        for split_file in benchmark.splits:
            target = staging / split_file.filename
            if source_dir is not None:
                origin = str(source_dir / split_file.filename)
                shutil.copyfile(origin, target)
            else:
                origin = split_file.url
                try:
                    fetch(split_file.url, target)
                except (urllib.error.URLError, OSError, TimeoutError) as error:
                    reason = getattr(error, "reason", error)
                    names = ", ".join(f.filename for f in benchmark.splits)
                    offline = f"fsarbench data splits {benchmark.name} --from FOLDER"
                    raise FsarbenchError(
                        f"could not download {split_file.url} ({reason})",
                        f"without network access, copy the files {names} from "
                        f"{benchmark.source} into a folder and run `{offline}`",
                    ) from None
            lists[split_file.split] = verify_split_file(benchmark, split_file.split, target, origin)
        check_disjoint(lists, benchmark.name)
        _write_manifest(staging, benchmark, lists, str(source_dir) if source_dir else "download")
        install_folder(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return StoredSplits(benchmark, final, lists)


def load_stored_splits(benchmark: Benchmark, verify: bool = True) -> StoredSplits:
    """Read the split lists stored by :func:`store_splits` (checksums re-verified: cheap)."""
    folder = splits_folder(benchmark)
    if not (folder / MANIFEST).is_file():
        raise FsarbenchError(
            f"the {benchmark.name} split lists are not on this machine",
            f"run `fsarbench data splits {benchmark.name}` (or with `--from FOLDER` offline)",
        )
    lists = {}
    for split_file in benchmark.splits:
        path = folder / split_file.filename
        if not path.is_file():
            raise FsarbenchError(
                f"{path} is missing from the stored {benchmark.name} splits",
                f"run `fsarbench data splits {benchmark.name}` again",
            )
        if verify:
            lists[split_file.split] = verify_split_file(benchmark, split_file.split, path)
        else:
            entries = parse_split_text(path.read_text("ascii"), str(path))
            lists[split_file.split] = SplitList(split_file.split, tuple(entries))
    return StoredSplits(benchmark, folder, lists)
