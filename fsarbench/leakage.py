"""The leakage guard: backbone pretraining that has seen a benchmark's test classes.

A backbone declares the corpora its weights were pretrained on (``--pretrained-on`` for a
``--weights`` file); a benchmark declares the corpora whose labels contain its test classes
(``Benchmark.test_classes_in``): Kinetics-100's novel classes are Kinetics-400 classes, and the
SSv2 splits' test classes are SSv2 classes. A run whose pretraining overlaps its benchmark's
test classes stops before anything is written unless ``--allow-leakage``; an allowed run keeps
the overlap in its record (``leakage``) and the leaderboard marks it.
"""

from __future__ import annotations

from fsarbench.benchmarks.registry import Benchmark
from fsarbench.errors import FsarbenchError

# name -> what it is; names are checked because a typo would silently disarm the guard
PRETRAINING_CORPORA = {
    "imagenet-1k": "ImageNet-1k classification (ILSVRC 2012)",
    "imagenet-21k": "ImageNet-21k",
    "kinetics-400": "Kinetics-400 (videos and labels)",
    "kinetics-600": "Kinetics-600 (a superset of Kinetics-400's classes)",
    "kinetics-700": "Kinetics-700 (a superset of Kinetics-600's classes)",
    "ssv2": "Something-Something-v2 (videos and labels)",
    "wit-400m": "CLIP's 400M image-text pairs (undisclosed; not known to overlap)",
}


def parse_pretrained_on(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))
    unknown = [name for name in names if name not in PRETRAINING_CORPORA]
    if unknown:
        raise FsarbenchError(
            f"unknown pretraining corpus {', '.join(map(repr, unknown))}",
            "name them from: " + ", ".join(PRETRAINING_CORPORA),
        )
    return names


def leakage_for(benchmark: Benchmark, pretrained_on: tuple[str, ...]) -> list[str]:
    """The declared pretraining corpora whose labels include ``benchmark``'s test classes."""
    return sorted(set(pretrained_on) & set(benchmark.test_classes_in))


def check_leakage(benchmarks: list[Benchmark], pretrained_on: tuple[str, ...], allow: bool) -> None:
    for benchmark in benchmarks:
        overlap = leakage_for(benchmark, pretrained_on)
        if overlap and not allow:
            raise FsarbenchError(
                f"the backbone was pretrained on {', '.join(overlap)}, whose labels include "
                f"{benchmark.name}'s test classes: its results would not be few-shot",
                "use weights pretrained without those classes, or pass --allow-leakage to run "
                "anyway (the record and the leaderboard then mark the run)",
            )
