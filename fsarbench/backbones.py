"""The backbone registry: one config fragment per backbone in ``configs/_base_/backbones/``.

A fragment names the backbone (``name``, what ``--backbone`` and the records use), builds it
(``backbone``: an MMEngine model config) and says where its weights come from and what they
were pretrained on (``about``). The classes live in ``fsarbench.methods.backbones`` and
``fsarbench.methods.hf_backbones``; this module only reads the fragments.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

from fsarbench.configs import CONFIG_ROOT, read_config
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
    config = read_config(path)
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


# --- weights given with --weights --------------------------------------------------------


def weights_content_hash(path: Path) -> str:
    """sha256 of a --weights file, or of a folder's files (relative path and bytes of each,
    in order): the weights' part of a run's identity, wherever they are mounted."""
    path = path.expanduser().resolve()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    stamp = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _content_hash(path, stamp)


@functools.lru_cache(maxsize=16)
def _content_hash(path: Path, stamp: tuple) -> str:
    # ``stamp`` (every file's path, size and modification time) keys the cache: a plan
    # resolves every run of a suite, and CLIP's weights are 600 MB
    digest = hashlib.sha256()
    for name, size, _ in stamp:
        file = Path(name)
        if path.is_dir():  # each file's name and length first: no two layouts hash alike
            digest.update(f"{file.relative_to(path).as_posix()}\0{size}\0".encode())
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()


def load_backbone_weights(backbone, path: Path) -> None:
    """Load backbone weights (``torch.save`` or safetensors) with ``weights_only=True``: this
    backbone's own state dict or a common layout it adapts (``adapt_state_dict``: for ResNet,
    torchvision's and MMAction2's); every key and shape is then checked."""
    import torch

    from fsarbench.console import stderr

    if not path.is_file():
        raise FsarbenchError(f"--weights {path}: no such file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise FsarbenchError(
            f"--weights {path} cannot be read as a state dict ({type(error).__name__}: {error})",
            "save weights with torch.save(model.state_dict(), FILE) or as .safetensors",
        ) from None
    if not isinstance(state, dict):
        raise FsarbenchError(
            f"--weights {path} holds a {type(state).__name__}, not a state dict",
            "save weights with torch.save(model.state_dict(), FILE) or as .safetensors",
        )
    if hasattr(backbone, "adapt_state_dict"):  # the backbone knows the common key layouts
        state, dropped = backbone.adapt_state_dict(state)
        if dropped:
            stderr.print(
                f"--weights {path.name}: {len(dropped)} keys outside the backbone left out "
                f"(such as {dropped[0]}: a classifier or CLIP's text tower)"
            )
    expected = backbone.state_dict()
    # BatchNorm counters are absent from older checkpoints and play no part at test time
    for key in expected:
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = expected[key]
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    wrong = sorted(
        f"{key} {tuple(state[key].shape)} (expected {tuple(expected[key].shape)})"
        for key in set(state) & set(expected)
        if tuple(state[key].shape) != tuple(expected[key].shape)
    )
    if missing or extra or wrong:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", extra), ("wrong shape", wrong)):
            if keys:
                shown = ", ".join(keys[:5]) + (
                    f" and {len(keys) - 5} more" if len(keys) > 5 else ""
                )
                parts.append(f"{len(keys)} {label}: {shown}")
        raise FsarbenchError(
            f"--weights {path} does not fit the backbone ({'; '.join(parts)})",
            "use weights saved from the same backbone config (`fsarbench config` shows it); "
            "for CLIP and VideoMAE, give the whole Hugging Face folder: its config.json sets "
            "the architecture",
        )
    backbone.load_state_dict(state)


def weights_pretrained_on(
    config, weights: Path | None, pretrained_on: tuple[str, ...]
) -> tuple[str, ...]:
    """What the run's backbone weights (``--weights``) were pretrained on: ``--pretrained-on``,
    else the backbone's declaration for its usual weights; and whether ``--weights`` suits
    the backbone (a Hugging Face folder for CLIP and VideoMAE, a state-dict file or such a
    folder's ``model.safetensors`` otherwise)."""
    info = backbone_info(config.backbone_name)
    if weights is not None and weights.is_dir() and not info.takes_folder:
        raise FsarbenchError(
            f"--weights {weights} is a folder, but {info.name} loads a state-dict file",
            f"give the file ({info.weights})",
        )
    return weights_pretraining(info, weights, pretrained_on)


def check_method_fits_backbone(method: str, config, weights: Path | None) -> None:
    """A method's needs against the run's backbone (``config``: the method's run config): the
    feature kind its head reads, and a text tower for methods that embed class names."""
    from fsarbench.registry import MODELS

    model_class = MODELS.get(config.method["type"])
    info = backbone_info(config.backbone_name)
    backbone_class = MODELS.get(info.config["type"])
    if model_class.feature_kind not in backbone_class.kinds:
        raise FsarbenchError(
            f"{method} reads {model_class.feature_kind} features, which {info.name} does not "
            "provide",
            "choose another --backbone (`fsarbench ls backbones`)",
        )
    if model_class.needs_text and not info.has_text_tower:
        raise FsarbenchError(
            f"{method} embeds class names with CLIP's text tower; {info.name} has none",
            "run it with --backbone clip-vit-b16 --weights CLIP_FOLDER",
        )
    if model_class.needs_text and not (weights is not None and weights.is_dir()):
        raise FsarbenchError(
            f"{method} embeds class names with CLIP's text tower and tokenizer, which come "
            "with CLIP's weights folder",
            "pass --weights CLIP_FOLDER (config.json, model.safetensors, vocab.json, "
            "merges.txt; see README, Backbones)",
        )
