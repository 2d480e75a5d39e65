"""The leakage guard: backbone pretraining that has seen a benchmark's test classes.

A backbone declares the corpora its weights were pretrained on (``--pretrained-on`` for a
``--weights`` file); a benchmark declares the corpora whose labels contain its test classes
(``Benchmark.test_classes_in``): Kinetics-100's novel classes are Kinetics-400 classes, and the
SSv2 splits' test classes are SSv2 classes. A run whose pretraining overlaps its benchmark's
test classes stops before anything is written unless ``--allow-leakage``; an allowed run keeps
the overlap in its record (``leakage``) and the leaderboard marks it.

The same guard works on label sets (known-answer test VM-2): ``--pretrained-labels FILE`` lists
the classes the weights were trained on, and a run stops when any of them is one of its
benchmark's test classes (names compared as ``class_names.readable`` words: case, underscores,
CamelCase and SSv2's brackets do not matter).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from fsarbench.benchmarks.class_names import class_texts, readable
from fsarbench.benchmarks.registry import Benchmark
from fsarbench.errors import FsarbenchError

LABELS_FIX = (
    "give a UTF-8 text file with one class name per line (blank lines and lines starting "
    "with # are skipped), or a JSON list of names"
)

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


def read_pretraining_labels(path: Path) -> frozenset[str]:
    """The class names a ``--pretrained-labels`` file lists, as readable words."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FsarbenchError(f"--pretrained-labels {path}: no such file", LABELS_FIX) from None
    except (OSError, UnicodeDecodeError) as error:
        raise FsarbenchError(
            f"--pretrained-labels {path} cannot be read ({error})", LABELS_FIX
        ) from None
    if text.lstrip().startswith("["):
        try:
            names = json.loads(text)
        except json.JSONDecodeError as error:
            raise FsarbenchError(
                f"--pretrained-labels {path} starts like JSON but is not ({error})", LABELS_FIX
            ) from None
        if not all(isinstance(name, str) for name in names):
            raise FsarbenchError(
                f"--pretrained-labels {path}: its JSON list holds something other than names",
                LABELS_FIX,
            )
    else:
        names = [line for line in text.splitlines() if not line.strip().startswith("#")]
    labels = frozenset(readable(name) for name in names if name.strip())
    if not labels:
        raise FsarbenchError(f"--pretrained-labels {path} lists no class names", LABELS_FIX)
    return labels


def label_leakage(test_classes: Iterable[str], pretraining_labels: frozenset[str]) -> list[str]:
    """The benchmark's test classes (readable names) that the pretraining labels include."""
    return sorted({readable(name) for name in test_classes} & pretraining_labels)


def check_label_leakage(benchmark: Benchmark, overlap: list[str], allow: bool) -> None:
    if overlap and not allow:
        shown = ", ".join(overlap[:5]) + (
            f" and {len(overlap) - 5} more" if len(overlap) > 5 else ""
        )
        raise FsarbenchError(
            f"{len(overlap)} of {benchmark.name}'s test classes are among the classes the "
            f"backbone was trained on ({shown}): its results would not be few-shot",
            "use weights trained without those classes, or pass --allow-leakage to run "
            "anyway (the record and the leaderboard then mark the run)",
        )


def named_test_classes(benchmark: Benchmark, labels: Iterable[str]) -> list[str]:
    """The test split's class labels as names to compare with ``--pretrained-labels``;
    placeholders without stored names (SSv2-Full's ``test0``..) cannot be compared."""
    try:
        return class_texts(benchmark, tuple(labels))
    except FsarbenchError as error:
        raise FsarbenchError(
            f"{benchmark.name} names its test classes by placeholders, so --pretrained-labels "
            "cannot be compared with them",
            error.fix,
        ) from None
