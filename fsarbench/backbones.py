"""The backbone registry: one config fragment per backbone in ``configs/_base_/backbones/``.

A fragment names the backbone (``name``, what ``--backbone`` and the records use), builds it
(``backbone``: an MMEngine model config) and says where its weights come from and what they
were pretrained on (``about``). The classes live in ``fsarbench.methods.backbones`` and
``fsarbench.methods.hf_backbones``; this module only reads the fragments.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fsarbench.configs import CONFIG_ROOT
from fsarbench.errors import FsarbenchError
from fsarbench.leakage import PRETRAINING_CORPORA


@dataclass(frozen=True)
class BackboneInfo:
    name: str  # as --backbone and the records spell it
    fragment: str  # the fragment's file stem
    summary: str
    weights: str  # where its weights come from
    weights_pretrained_on: tuple[str, ...]  # taken as the weights' pretraining unless declared
    must_declare_pretraining: bool  # weights must come with --pretrained-on
    config: dict  # the MMEngine model config

    @property
    def has_text_tower(self) -> bool:
        """It can embed text (CLIP): what heads that embed class names need."""
        from fsarbench.registry import MODELS

        return hasattr(MODELS.get(self.config["type"]), "encode_text")

    @property
    def takes_folder(self) -> bool:
        """Built from a Hugging Face folder (``pretrained``) rather than a state-dict file."""
        return "pretrained" in self.config


def _fragments() -> list[Path]:
    return sorted((CONFIG_ROOT / "_base_" / "backbones").glob("*.py"))


def _read(path: Path) -> BackboneInfo:
    from mmengine.config import Config

    config = Config.fromfile(str(path)).to_dict()
    about = config.get("about", {})
    declared = tuple(about.get("weights_pretrained_on", ()))
    unknown = [corpus for corpus in declared if corpus not in PRETRAINING_CORPORA]
    if unknown or "backbone" not in config:
        raise FsarbenchError(
            f"{path}: a backbone fragment needs `backbone` and known corpora "
            f"(unknown: {', '.join(unknown) or '-'})",
            "see configs/_base_/backbones/resnet50.py for the fields",
        )
    return BackboneInfo(
        name=config.get("name", path.stem),
        fragment=path.stem,
        summary=about.get("summary", ""),
        weights=about.get("weights", ""),
        weights_pretrained_on=declared,
        must_declare_pretraining=bool(about.get("must_declare_pretraining", False)),
        config=config["backbone"],
    )


def all_backbones() -> dict[str, BackboneInfo]:
    infos = [_read(path) for path in _fragments()]
    return {info.name: info for info in infos}


# Appended to a backbone's name in records when its weights folder holds another architecture
CUSTOM_SUFFIX = "-custom"


def backbone_info(name: str) -> BackboneInfo:
    """A backbone by its name (``clip-vit-b16``, also as recorded with a custom architecture:
    ``clip-vit-b16-custom``) or its fragment's stem (``clip_vit_b16``)."""
    name = name.partition("@")[0].removesuffix(CUSTOM_SUFFIX)  # as recorded: NAME[-custom][@amp]
    for info in all_backbones().values():
        if name in (info.name, info.fragment):
            return info
    raise FsarbenchError(
        f"unknown backbone {name!r}",
        f"use one of: {', '.join(all_backbones())} (`fsarbench ls backbones`)",
    )


def architecture_differences(info: BackboneInfo, folder: Path) -> list[str]:
    """Where a Hugging Face folder's architecture departs from the one the backbone's name
    stands for (``arch`` in its fragment): ``["hidden_size 32 (not 768)", ...]``."""
    from fsarbench.methods.hf_backbones import read_hf_config

    declared = info.config.get("arch") or {}
    hf_config = read_hf_config(folder)
    actual = hf_config.get("vision_config", hf_config)  # a whole CLIP model keeps it there
    return [
        f"{key} {actual.get(key)} (not {value})"
        for key, value in declared.items()
        if key in actual and actual[key] != value
    ]


def weights_pretraining(
    info: BackboneInfo, weights: Path | None, declared: tuple[str, ...]
) -> tuple[str, ...]:
    """What the run's backbone weights saw: ``--pretrained-on`` when given, else what the
    backbone declares for its usual weights; a backbone whose checkpoints differ in this
    (VideoMAE: Kinetics-400 or SSv2) makes the user say it."""
    if weights is None:
        return declared  # a seeded initialisation has seen nothing (declared is empty here)
    if declared:
        return declared
    if info.must_declare_pretraining:
        raise FsarbenchError(
            f"{info.name} weights must say what they were pretrained on: its checkpoints come "
            "pretrained on Kinetics-400 or SSv2, which hold test classes of k100 and ssv2-*",
            "add --pretrained-on kinetics-400 (or ssv2, ...; `fsarbench run --help` lists them)",
        )
    return info.weights_pretrained_on
