"""The benchmark registry: every benchmark's split sources, line format, counts and video layout.

The split source is part of a benchmark's name because results on different splits are not
comparable. Every real benchmark's split lists are pinned: a public URL at a fixed commit plus
the sha256 of the file, and the class and video counts that were measured on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fsarbench.errors import FsarbenchError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SplitFile:
    """One pinned split list: where it comes from and what it must contain."""

    split: str  # train | val | test
    filename: str  # name of the file in the source repository and in the user's data folder
    url: str  # raw URL at a fixed commit
    sha256: str
    n_classes: int
    n_videos: int


@dataclass(frozen=True)
class VideoLayout:
    """How a benchmark's videos are named on disk, relative to the folder the user names.

    A split line ``<class>/<id>`` may sit at any of ``patterns`` (``{id}``, ``{cls}`` and
    ``{cls_}`` = class name with spaces as underscores), with one of ``extensions``; frame
    folders use the same patterns without an extension.
    """

    description: str
    patterns: tuple[str, ...]
    extensions: tuple[str, ...]

    def candidates(self, class_name: str, video_id: str) -> list[str]:
        """Relative paths without extension where this video may be, most likely first."""
        underscored = class_name.replace(" ", "_")
        seen: dict[str, None] = {}
        for pattern in self.patterns:
            seen[pattern.format(id=video_id, cls=class_name, cls_=underscored)] = None
        return list(seen)


@dataclass(frozen=True)
class Benchmark:
    name: str
    title: str
    aliases: tuple[str, ...]
    protocol: str  # the split protocol and the paper that defined it
    source: str  # the repository the pinned split lists come from
    layout: VideoLayout
    splits: tuple[SplitFile, ...] = ()
    line_format: str = "<class>/<video id>"
    class_names: str = "in the split lists"
    notes: tuple[str, ...] = field(default_factory=tuple)
    # pretraining corpora whose labels include this benchmark's test classes (leakage guard)
    test_classes_in: tuple[str, ...] = ()

    @property
    def is_synthetic(self) -> bool:
        return not self.splits

    def split_file(self, split: str) -> SplitFile:
        for split_file in self.splits:
            if split_file.split == split:
                return split_file
        raise KeyError(split)


def _raw(repo: str, commit: str, path: str) -> str:
    return f"https://raw.githubusercontent.com/{repo}/{commit}/{path}"


_TA2N = ("R00Kie-Liu/TA2N", "2becdd8174fe40812ef4c41828b5d9fc20fa95ec")
_CMN = ("ffmpbgrnn/CMN", "23b5ef3e6defd4ee93e97131eb3c0b7926481f56")
_TRX = ("tobyperrett/trx", "390c20aa8ed7e309ae4949464fdcf015c4009329")


def _split_files(repo_commit, folder, entries) -> tuple[SplitFile, ...]:
    repo, commit = repo_commit
    return tuple(
        SplitFile(split, filename, _raw(repo, commit, f"{folder}/{filename}"), sha, n_cls, n_vid)
        for split, filename, sha, n_cls, n_vid in entries
    )


_SSV2_LAYOUT = VideoLayout(
    "flat folder of Something-Something-v2 videos, <id>.webm (as released) or <id>.mp4",
    patterns=("{id}",),
    extensions=(".webm", ".mp4"),
)
_KINETICS_LAYOUT = VideoLayout(
    "<youtube id>_<start>_<end>.mp4, flat or in class folders (spaces or underscores)",
    patterns=("{id}", "{cls}/{id}", "{cls_}/{id}"),
    extensions=(".mp4", ".mkv", ".webm"),
)
_CLASS_FOLDER_AVI = VideoLayout(
    "<class folder>/<video name>.avi, as released", patterns=("{cls}/{id}",), extensions=(".avi",)
)

BENCHMARKS: dict[str, Benchmark] = {}


def _register(benchmark: Benchmark) -> None:
    BENCHMARKS[benchmark.name] = benchmark


_register(
    Benchmark(
        name="ssv2-full",
        title="Something-Something-v2, OTAM split",
        aliases=("ssv2",),
        test_classes_in=("ssv2",),
        protocol="OTAM split (Cao et al., CVPR 2020): 64/12/24 classes, every video of a class",
        source="R00Kie-Liu/TA2N splits/ssv2_OTAM @ 2becdd8 (val/test identical to tobyperrett/trx)",
        layout=_SSV2_LAYOUT,
        splits=_split_files(
            _TA2N,
            "splits/ssv2_OTAM",
            [
                (
                    "train",
                    "trainlist03.txt",
                    "61b5f7eda569db893994d7855fab46dd4fbe7e467f3bdb8d57aef5106e58659f",
                    64,
                    77500,
                ),
                (
                    "val",
                    "vallist03.txt",
                    "b9884e9e716fbb9a902121d797c0a43ec04517085eb6b36a2804e037db63d6eb",
                    12,
                    1926,
                ),
                (
                    "test",
                    "testlist03.txt",
                    "83a1ac8e7c6f720c55dced1dc9deae1c11fb8271f8a3bb1f0952aed068646a1e",
                    24,
                    2857,
                ),
            ],
        ),
        line_format="<split><class index>/<numeric SSv2 id>",
        class_names="none: classes are train0..train63, val0..val11, test0..test23",
        notes=(
            "val/test hold 1,926 / 2,857 videos against 1,925 / 2,854 published.",
            "TRX, HyRSM, MoLo and CLIP-FSAR train on a 67,013-video truncation of this train "
            "list; test results are comparable, training sets are not.",
        ),
    )
)
_register(
    Benchmark(
        name="ssv2-small",
        title="Something-Something-v2, CMN split (SSv2-100)",
        aliases=(),
        test_classes_in=("ssv2",),
        protocol="CMN split (Zhu & Yang, ECCV 2018): 64/12/24 classes, 100 videos per class",
        source="ffmpbgrnn/CMN smsm-100 @ 23b5ef3 (identical to tobyperrett/trx ssv2_CMN)",
        layout=_SSV2_LAYOUT,
        splits=_split_files(
            _CMN,
            "smsm-100",
            [
                (
                    "train",
                    "train.list",
                    "fd15c2eff0065ef3e70a3b4f364b9d7e1c1d2581ce73d22b83d0e4c91e799fb1",
                    64,
                    6400,
                ),
                (
                    "val",
                    "val.list",
                    "aa280e1ece78dc248ae3bda9668bbc549d4837a8dc1e1699f13525d32c1ece43",
                    12,
                    1200,
                ),
                (
                    "test",
                    "test.list",
                    "4e8b9ae7446331c47ece4c342cfe4f67896b717f4dea92ffd7659e72baeeddd6",
                    24,
                    2400,
                ),
            ],
        ),
        line_format="<SSv2 label template>/<numeric SSv2 id>",
        class_names="SSv2 label templates (spaces, commas, apostrophes, parentheses)",
    )
)
_register(
    Benchmark(
        name="k100",
        title="Kinetics-100, CMN split",
        aliases=("kinetics",),
        # Kinetics-600 and -700 extend Kinetics-400's classes
        test_classes_in=("kinetics-400", "kinetics-600", "kinetics-700"),
        protocol="CMN split (Zhu & Yang, ECCV 2018): 64/12/24 Kinetics-400 classes, 100 per class",
        source="ffmpbgrnn/CMN kinetics-100 @ 23b5ef3 (identical to tobyperrett/trx kinetics_CMN)",
        layout=_KINETICS_LAYOUT,
        splits=_split_files(
            _CMN,
            "kinetics-100",
            [
                (
                    "train",
                    "train.list",
                    "d0cbdcaa6fd4a28c8a514e85dd47407a4124ba3d8187aadd0a41c47636d592ae",
                    64,
                    6400,
                ),
                (
                    "val",
                    "val.list",
                    "e3144200327ce31bc5be0e1efb1107c6c7f2912c95eb2457095374b2c22bf74a",
                    12,
                    1200,
                ),
                (
                    "test",
                    "test.list",
                    "9c2351cf070ad7d052f1fb2885e5e4b246da7a38d06cb730bf7473eeb7173d09",
                    24,
                    2400,
                ),
            ],
        ),
        line_format="<Kinetics-400 class name>/<youtube id>_<start:06d>_<end:06d>",
        class_names="Kinetics-400 names (spaces; one has parentheses)",
        notes=(
            "Some YouTube videos are gone: fsarbench reports how many are missing and never "
            "swaps in other videos.",
        ),
    )
)
_register(
    Benchmark(
        name="ucf101",
        title="UCF-101, ARN split",
        aliases=(),
        protocol="ARN split (Zhang et al., ECCV 2020): 70/10/21 classes, every video of a class",
        source="tobyperrett/trx splits/ucf_ARN @ 390c20a",
        layout=_CLASS_FOLDER_AVI,
        splits=_split_files(
            _TRX,
            "splits/ucf_ARN",
            [
                (
                    "train",
                    "trainlist03.txt",
                    "5513fc00bdba74ae84ee721fc1cc2bae0aa2d4fb7883b9b6f90387ca1a54ddb8",
                    70,
                    9154,
                ),
                (
                    "val",
                    "vallist03.txt",
                    "5482ce6d2f2db2568a8cd41158ab5a406fad36fcc9940c1811573937ad6bfc4f",
                    10,
                    1421,
                ),
                (
                    "test",
                    "testlist03.txt",
                    "0887937010eee99ae3baf3178227ac35daebf6a35431b2df051fcf682b48bc31",
                    21,
                    2745,
                ),
            ],
        ),
        line_format="<UCF-101 class folder>/<video name without .avi>",
        class_names="UCF-101 class folder names",
        notes=("Folder HandstandPushups holds v_HandStandPushups_* videos (as released).",),
    )
)
_register(
    Benchmark(
        name="hmdb51",
        title="HMDB-51, ARN split",
        aliases=(),
        protocol="ARN split (Zhang et al., ECCV 2020): 31/10/10 classes, every clip of a class",
        source="tobyperrett/trx splits/hmdb_ARN @ 390c20a",
        layout=_CLASS_FOLDER_AVI,
        splits=_split_files(
            _TRX,
            "splits/hmdb_ARN",
            [
                (
                    "train",
                    "trainlist03.txt",
                    "2524450b6d7b18775411361fbc366c30345d83516a2d6eec12b6af04c884ec88",
                    31,
                    4280,
                ),
                (
                    "val",
                    "vallist03.txt",
                    "85458cf86f85354b411080f6aea3157c5831b1a3bf40fed24e4a2c7a17f8027c",
                    10,
                    1194,
                ),
                (
                    "test",
                    "testlist03.txt",
                    "e2ce039f857287cb943a00d27ac6d2559a434e7bde5722d350c269253160d388",
                    10,
                    1292,
                ),
            ],
        ),
        line_format="<HMDB-51 class folder>/<clip name without .avi>",
        class_names="HMDB-51 class folder names",
        notes=(
            "Clip names contain shell-unsafe characters; fsarbench never passes them to a shell.",
        ),
    )
)
_register(
    Benchmark(
        name="synth",
        title="fsarbench synthetic actions (built in)",
        aliases=(),
        protocol="fsarbench synth v1: 64/12/24 classes of ordered motion-primitive compositions",
        source="generated locally by `fsarbench data generate synth` (deterministic from a seed)",
        layout=VideoLayout(
            "<class name>/<id>.mp4, generated", patterns=("{cls}/{id}",), extensions=(".mp4",)
        ),
        line_format="<class name>/<video id>",
        class_names="the motion primitives in order, e.g. 'move left, then grow, then rotate cw'",
    )
)

ALIASES: dict[str, str] = {
    alias: benchmark.name for benchmark in BENCHMARKS.values() for alias in benchmark.aliases
}


def benchmark_names() -> list[str]:
    return list(BENCHMARKS)


def get_benchmark(name: str) -> Benchmark:
    """Resolve a benchmark name or alias; an unknown name lists the valid ones."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in BENCHMARKS:
        valid = ", ".join(
            f"{b.name} (alias {', '.join(b.aliases)})" if b.aliases else b.name
            for b in BENCHMARKS.values()
        )
        raise FsarbenchError(
            f"unknown benchmark {name!r}",
            f"use one of: {valid}; `fsarbench ls benchmarks` lists them",
        )
    return BENCHMARKS[key]
