"""Class names as text, for methods that embed them (CLIP-FSAR's "a photo of {name}").

Most split lists name their classes (Kinetics-100 and SSv2-Small in words, UCF-101 and HMDB-51
in CamelCase or underscores, synth in words), and the name is made readable: ``ApplyEyeMakeup``
-> ``apply eye makeup``, ``brush_hair`` -> ``brush hair``. SSv2-Full's OTAM lists only say
``train0`` ... ``test23``; their names come from SSv2's own annotation files, which every user
of SSv2 has: ``fsarbench data class-names ssv2-full something-something-v2-train.json
something-something-v2-validation.json`` looks each class's videos up there and stores the
template they share (``Pushing [something] from left to right`` -> ``pushing something from
left to right``) in ``class_names.json`` beside the split lists. A JSON object
``{"train0": "name", ...}`` can be given instead.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from fsarbench.benchmarks.registry import Benchmark
from fsarbench.errors import FsarbenchError
from fsarbench.fileio import atomic_write_text

CLASS_NAMES_FILE = "class_names.json"
_PLACEHOLDER = re.compile(r"^(train|val|test)\d+$")


def readable(label: str) -> str:
    """A split-list class label as words: CamelCase and underscores split, brackets of SSv2
    templates dropped, lower case."""
    text = label.replace("_", " ").replace("[", "").replace("]", "")
    text = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", text)
    return re.sub(r"\s+", " ", text).strip().lower()


def stored_names_path(benchmark: Benchmark) -> Path:
    from fsarbench.benchmarks.splits import splits_folder

    return splits_folder(benchmark) / CLASS_NAMES_FILE


def class_texts(benchmark: Benchmark, labels: tuple[str, ...]) -> list[str]:
    """The text of each class label of a split, in order."""
    path = None if benchmark.is_synthetic else stored_names_path(benchmark)
    stored = json.loads(path.read_text()) if path is not None and path.is_file() else {}
    texts = []
    for label in labels:
        if label in stored:
            texts.append(readable(stored[label]))
        elif _PLACEHOLDER.match(label):
            raise FsarbenchError(
                f"{benchmark.name} names its classes {label!r} and the like, not in words, and "
                "this method embeds class names",
                f"run `fsarbench data class-names {benchmark.name} "
                "something-something-v2-train.json something-something-v2-validation.json` "
                "(SSv2's annotation files) or give a JSON object {label: name}",
            )
        else:
            texts.append(readable(label))
    return texts


def _names_from_ssv2(entries: list, labels_by_video: dict[str, str]) -> dict[str, str]:
    """SSv2 annotation entries (``{"id", "template", ...}``) -> the template each split class's
    videos share."""
    templates: dict[str, Counter] = {}
    for entry in entries:
        if not isinstance(entry, dict) or "id" not in entry or "template" not in entry:
            raise FsarbenchError(
                "an SSv2 annotation entry lacks 'id' or 'template'",
                "give something-something-v2-train.json / -validation.json as SSv2 ships them",
            )
        label = labels_by_video.get(str(entry["id"]))
        if label is not None:
            templates.setdefault(label, Counter())[entry["template"]] += 1
    names = {}
    for label, counts in templates.items():
        (template, _), *others = counts.most_common()
        if others:
            raise FsarbenchError(
                f"the videos of class {label} carry {len(counts)} different SSv2 templates",
                "check that these are SSv2's annotation files for these split lists",
            )
        names[label] = template
    return names


def store_class_names(benchmark: Benchmark, sources: list[Path]) -> Path:
    """Read names from SSv2 annotation files or a ``{label: name}`` JSON object, check that
    every class of the stored split lists gets one, and write them beside the lists."""
    from fsarbench.benchmarks.splits import load_stored_splits

    stored = load_stored_splits(benchmark)  # clear error when the split lists are absent
    labels_by_video = {
        entry.video_id: entry.class_name
        for split in stored.lists.values()
        for entry in split.entries
    }
    all_labels = sorted(set(labels_by_video.values()))
    names: dict[str, str] = {}
    for source in sources:
        try:
            data = json.loads(Path(source).read_text())
        except (OSError, ValueError) as error:
            raise FsarbenchError(
                f"{source} cannot be read as JSON ({error})",
                "give SSv2's annotation JSON files or a JSON object {label: name}",
            ) from None
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(all_labels))
            if unknown:
                raise FsarbenchError(
                    f"{source} names classes that {benchmark.name}'s split lists do not have: "
                    f"{', '.join(unknown[:5])}",
                    f"its keys must be the split lists' labels ({', '.join(all_labels[:3])}, ...)",
                )
            names.update({label: str(name) for label, name in data.items()})
        elif isinstance(data, list):
            names.update(_names_from_ssv2(data, labels_by_video))
        else:
            raise FsarbenchError(
                f"{source} holds a {type(data).__name__}",
                "give SSv2's annotation JSON files or a JSON object {label: name}",
            )
    missing = [label for label in all_labels if label not in names]
    if missing:
        raise FsarbenchError(
            f"no name for {len(missing)} of {len(all_labels)} classes ({', '.join(missing[:5])})",
            "give both SSv2 annotation files (train and validation: the OTAM test classes' "
            "videos are in both), or a JSON object that covers every class",
        )
    path = stored_names_path(benchmark)
    atomic_write_text(path, json.dumps(dict(sorted(names.items())), indent=1) + "\n")
    return path
