"""Run configs composed from one-level fragments: method + benchmark + protocol + backbone.

Every fragment lives in ``configs/`` and inherits from nothing. A run's config is the merge of
``configs/<method>/<method>.py`` (``method``), ``configs/_base_/benchmarks/<b>.py``
(``benchmark``, which names its default protocol and backbone), the protocol and backbone
fragments, and ``configs/_base_/evaluation.py``, plus the run's own choices (way, shot,
episodes). ``fsarbench config METHOD BENCHMARK`` prints the result.
"""

from __future__ import annotations

import difflib
import hashlib
import inspect
import json
import os
from pathlib import Path
from typing import Any

from mmengine.config import Config

from fsarbench.backbones import backbone_info
from fsarbench.benchmarks.registry import Benchmark
from fsarbench.configs import CONFIG_ROOT, config_path, read_config
from fsarbench.errors import FsarbenchError

TRAINING_MODES = ("none", "finetune", "frozen")
# The key of a method config's `schedules` / `method_overrides` that covers every real benchmark.
REAL_BENCHMARKS = "real"


def _fragment_names(kind: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_ROOT / "_base_" / kind).glob("*.py"))


def load_fragment(kind: str, name: str) -> dict:
    """One fragment's variables as plain dicts (``kind``: protocols, benchmarks, schedules;
    backbones are read by ``fsarbench.backbones``)."""
    path = config_path(f"_base_/{kind}/{name}.py")
    if not path.is_file():
        raise FsarbenchError(
            f"no {kind[:-1]} config named {name!r}",
            f"use one of: {', '.join(_fragment_names(kind))} (in {path.parent})",
        )
    return read_config(path)


def benchmark_fragment_name(benchmark: Benchmark) -> str:
    return benchmark.name.replace("-", "_")


def method_config_roots() -> list[Path]:
    """Where method configs are looked up: ``FSARBENCH_CONFIG_PATH`` (folders separated by
    ``os.pathsep``, for methods that live outside fsarbench), then fsarbench's own configs."""
    extra = [Path(p) for p in os.environ.get("FSARBENCH_CONFIG_PATH", "").split(os.pathsep) if p]
    return [*extra, CONFIG_ROOT]


def method_config_file(name: str) -> Path:
    """``<root>/<method>/<name>.py``: a method's main config or one of its variants."""
    for root in method_config_roots():
        found = sorted(p for p in root.glob(f"*/{name}.py") if p.parent.name != "_base_")
        if found:
            return found[0]
    raise FsarbenchError(
        f"no method config named {name!r} in {', '.join(map(str, method_config_roots()))}",
        "a method's configs live in configs/<method>/<name>.py (`fsarbench ls methods`)",
    )


def load_method_file(name: str) -> dict:
    """A method config file's variables: ``method`` (the model), and optionally ``schedules``
    (the training recipe per benchmark), ``method_overrides`` (model settings per benchmark)
    and ``backbone`` (its default backbone, where the benchmark's does not suit it). A config
    may name the modules that register its method in MMEngine's
    ``custom_imports`` (a method kept outside fsarbench)."""
    path = method_config_file(name)
    config = read_config(path)
    imports = config.get("custom_imports", {}).get("imports", [])
    if imports:
        from mmengine.utils import import_modules_from_strings

        import_modules_from_strings(imports)
    if "method" not in config:
        raise FsarbenchError(f"{path} defines no `method`", "add method = dict(type=...)")
    benchmarks = set(_fragment_names("benchmarks"))
    for table in ("schedules", "method_overrides"):
        unknown = sorted(set(config.get(table, {})) - benchmarks - {REAL_BENCHMARKS})
        if unknown:
            raise FsarbenchError(
                f"{path}: `{table}` names unknown benchmarks {', '.join(unknown)}",
                f"use benchmark config names ({', '.join(sorted(benchmarks))}) or "
                f"{REAL_BENCHMARKS!r} for every real benchmark",
            )
    for benchmark, schedule in config.get("schedules", {}).items():
        if schedule not in _fragment_names("schedules"):
            raise FsarbenchError(
                f"{path}: schedules[{benchmark!r}] names no schedule {schedule!r}",
                f"use one of: {', '.join(_fragment_names('schedules'))}",
            )
    if "backbone" in config:  # the method's own default backbone (CLIP-FSAR: CLIP)
        backbone_info(config["backbone"])  # a clear error when it names none
    config["path"] = str(path)
    return config


def method_config(name: str, benchmark: Benchmark | None = None) -> dict:
    """The ``method`` dict of a method config, with its overrides for ``benchmark``."""
    config = load_method_file(name)
    method = dict(config["method"])
    if benchmark is not None:
        overrides = config.get("method_overrides", {})
        key = benchmark_fragment_name(benchmark)
        if key not in overrides and not benchmark.is_synthetic:
            key = REAL_BENCHMARKS
        method.update(overrides.get(key, {}))
    return method


def schedule_name_for(name: str, benchmark: Benchmark) -> str:
    """The training recipe of method config ``name`` on ``benchmark``: the method's own
    (``schedules``: by benchmark, then ``real`` for any real benchmark), else the benchmark's
    default."""
    schedules = load_method_file(name).get("schedules", {})
    key = benchmark_fragment_name(benchmark)
    if key in schedules:
        return schedules[key]
    if not benchmark.is_synthetic and REAL_BENCHMARKS in schedules:
        return schedules[REAL_BENCHMARKS]
    bench = load_fragment("benchmarks", key)["benchmark"]
    return bench["schedule"]


def compose_run_config(
    method: str,
    benchmark: Benchmark,
    *,
    n_way: int | None = None,
    k_shot: int | None = None,
    queries_per_class: int | None = None,
    episodes: int | None = None,
    backbone: str | None = None,
    synth: dict | None = None,
    training: str | None = None,
    pretrain: bool | None = None,
) -> Config:
    """The merged config of one run; ``None`` keeps the protocol's (or schedule's) default.

    ``training``: ``none`` (test the backbone as initialised or loaded), ``finetune`` or
    ``frozen``; ``pretrain``: run the schedule's classification stage first."""
    bench = load_fragment("benchmarks", benchmark_fragment_name(benchmark))["benchmark"]
    protocol = load_fragment("protocols", bench["protocol"])["protocol"]
    # the run's choice, else the method's own default, else the benchmark's
    default_backbone = load_method_file(method).get("backbone", bench["backbone"])
    chosen_backbone = backbone_info(backbone or default_backbone)
    evaluation = read_config(config_path("_base_/evaluation.py"))["evaluation"]
    run_protocol = {k: v for k, v in protocol.items() if k != "k_shots"}
    # None keeps the default; a given 0 stays 0 and is refused below
    run_protocol["n_way"] = int(protocol["n_way"] if n_way is None else n_way)
    run_protocol["k_shot"] = int(protocol["k_shots"][0] if k_shot is None else k_shot)
    run_protocol["queries_per_class_test"] = int(
        protocol["queries_per_class_test"] if queries_per_class is None else queries_per_class
    )
    run_protocol["test_episodes"] = int(protocol["test_episodes"] if episodes is None else episodes)
    for key in ("n_way", "k_shot", "queries_per_class_test", "test_episodes"):
        if run_protocol[key] < (2 if key == "n_way" else 1):
            raise FsarbenchError(
                f"{key.replace('_', ' ')} must be at least {2 if key == 'n_way' else 1}, "
                f"got {run_protocol[key]}"
            )
    if synth is not None and not benchmark.is_synthetic:
        raise FsarbenchError(f"synth settings were given for {benchmark.name}, a real benchmark")
    schedule = load_fragment("schedules", schedule_name_for(method, benchmark))["schedule"]
    if training is not None:
        if training not in TRAINING_MODES:
            raise FsarbenchError(
                f"unknown training mode {training!r}", f"use one of {', '.join(TRAINING_MODES)}"
            )
        schedule["mode"] = training
    if pretrain is not None:
        if pretrain and "iters" not in schedule["pretrain"]:
            raise FsarbenchError(
                f"the {schedule['name']} schedule has no pretraining stage",
                "drop --pretrain, or use a schedule with one",
            )
        schedule["pretrain"]["enabled"] = bool(pretrain)
    if schedule["mode"] == "none" and pretrain is None:
        schedule["pretrain"]["enabled"] = False  # `--train none` alone: the backbone as given
    return Config(
        dict(
            method=method_config(method, benchmark),
            schedule=schedule,
            backbone=dict(chosen_backbone.config),
            backbone_name=chosen_backbone.name,
            benchmark={**bench, "synth": synth},
            protocol=run_protocol,
            evaluation=evaluation,
        )
    )


# Recipe keys the training reads when they are present (fsarbench.training): settable with
# --cfg-options under schedule.pretrain and schedule.meta although a recipe may not set them.
OPTIONAL_RECIPE_KEYS = (
    "tasks_per_batch",
    "clip_grad",
    "paramwise_cfg",
    "val_interval",
    "log_interval",
    "param_scheduler",
    "seed",
)


def _dotted_keys(value: Any, prefix: str = "") -> list[str]:
    """Every dotted key of nested dicts, inner nodes included: a.b, a.b.c, ..."""
    keys = []
    if isinstance(value, dict):
        for name, inner in value.items():
            key = f"{prefix}{name}"
            keys.append(key)
            keys.extend(_dotted_keys(inner, key + "."))
    return keys


def _init_parameters(registered_type: str | None) -> list[str]:
    """The keyword parameters of a registered class's constructor (and its bases')."""
    from fsarbench.registry import MODELS

    cls = MODELS.get(registered_type) if registered_type else None
    names: list[str] = []
    for klass in inspect.getmro(cls) if cls is not None else ():
        if "__init__" in vars(klass):
            parameters = inspect.signature(klass.__init__).parameters.values()
            names += [
                p.name
                for p in parameters
                if p.kind is p.KEYWORD_ONLY
                or (p.kind is p.POSITIONAL_OR_KEYWORD and p.name != "self")
            ]
            if not any(p.kind is p.VAR_KEYWORD for p in parameters):
                break  # no **kwargs passed on to a base
    return names


def check_cfg_options(config: Config, cfg_options: dict) -> None:
    """Refuse a ``--cfg-options`` key that names no setting of the run's config (a typo would
    otherwise be merged in, recorded and silently do nothing), naming the closest keys."""
    known = set(_dotted_keys(config.to_dict()))
    known |= {
        f"schedule.{stage}.{key}" for stage in ("pretrain", "meta") for key in OPTIONAL_RECIPE_KEYS
    }
    known |= {f"method.{name}" for name in _init_parameters(config.method.get("type"))}
    known |= {f"backbone.{name}" for name in _init_parameters(config.backbone.get("type"))}
    for key in cfg_options:
        if key in known:
            continue
        close = difflib.get_close_matches(key, sorted(known), n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise FsarbenchError(
            f"--cfg-options {key}: the {config.method.get('type')} run config has no such setting",
            f"{hint}`fsarbench config {config.method.get('type')}` lists the settings",
        )


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


# Where a --weights file or folder lives: not part of a run's identity, which holds its content
# hash (``weights_sha256``) instead, so the same weights at another path are the same run.
WEIGHTS_LOCATION = "weights"
WEIGHTS_PLACEHOLDER = "<weights_sha256>"


def backbone_identity(config) -> dict:
    """The backbone's config as identity: a ``pretrained`` that is the --weights location
    stands for the weights' content hash, which the run config holds."""
    backbone = dict(config["backbone"])
    location = config.get(WEIGHTS_LOCATION)
    if location is not None and backbone.get("pretrained") == location:
        backbone["pretrained"] = WEIGHTS_PLACEHOLDER
    return backbone


def identity_tree(config) -> dict:
    """What determines a run's numbers: the config without the locations of files whose
    contents it holds as hashes (the weights' ``weights_sha256``; the data's annotation bytes
    and media digest, ``BenchmarkData.identity``)."""
    tree = config.to_dict() if isinstance(config, Config) else dict(config)
    if "backbone" in tree:
        tree["backbone"] = backbone_identity(tree)
    tree.pop(WEIGHTS_LOCATION, None)
    return tree


def config_hash(config: Config) -> str:
    """Hash of everything that determines a run's numbers (``identity_tree``): a cache, data
    or weights folder mounted at another path hashes the same."""
    return hashlib.sha256(canonical_json(identity_tree(config)).encode()).hexdigest()


# Settings a record's folder already names (benchmark key, backbone label, training tag,
# replicate in the record name) or that are measured inputs, not choices (the data identity):
# left out of a variant's settings.
NAMED_ELSEWHERE = (
    "code_version",
    "data",
    "amp",
    "pretrained_on",
    "backbone_name",
    "benchmark.synth",
    "schedule.replicate",
    "schedule.mode",
    "schedule.pretrain.enabled",
)


def settings_difference(config: Config, reference: Config) -> dict:
    """The dotted settings of ``config`` that differ from ``reference`` (the same run as the
    defaults compose it), with ``config``'s values; a key ``reference`` lacks counts as
    differing. What the record's folder names already is left out (``NAMED_ELSEWHERE``)."""
    ours = dict(_dotted_items(identity_tree(config)))
    theirs = dict(_dotted_items(identity_tree(reference)))
    return {
        key: value
        for key, value in sorted(ours.items())
        if theirs.get(key, _ABSENT) != value
        and not any(key == n or key.startswith(n + ".") for n in NAMED_ELSEWHERE)
    }


_ABSENT = object()


def _dotted_items(tree: dict, prefix: str = ""):
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            yield from _dotted_items(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def training_tag(schedule: dict) -> str:
    """How the tested weights came about, as recorded: none, finetune, frozen, pretrain+..."""
    mode = schedule["mode"]
    if schedule["pretrain"].get("enabled"):
        return "pretrain" if mode == "none" else f"pretrain+{mode}"
    return mode
