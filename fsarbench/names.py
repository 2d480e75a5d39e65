"""Names the user types, resolved: methods (``all``, names, globs), benchmarks, and which
methods a backbone can run. Config files are read through ``fsarbench.configs.read_config``,
once per process."""

from __future__ import annotations

import ast
import fnmatch
import importlib.util
from functools import cache
from pathlib import Path

from fsarbench.backbones import backbone_info
from fsarbench.benchmarks.registry import Benchmark, get_benchmark
from fsarbench.benchmarks.synth import SynthConfig
from fsarbench.config import load_method_file, method_config_roots
from fsarbench.configs import CONFIG_ROOT
from fsarbench.errors import FsarbenchError


def registered_methods() -> dict[str, type]:
    """Registry name -> class, for every registered few-shot method."""
    from fsarbench.methods import FewShotRecognizer
    from fsarbench.registry import MODELS  # imports torch: only where classes are needed

    MODELS.import_from_location()
    return {
        name: cls
        for name, cls in sorted(MODELS.module_dict.items())
        if isinstance(cls, type) and issubclass(cls, FewShotRecognizer)
    }


@cache
def _method_class_definitions() -> dict[str, tuple[ast.ClassDef, dict[str, ast.expr]]]:
    """Class name -> its definition and its module's top-level assignments, for every class in
    fsarbench's method modules (heads and backbones), parsed from their source (finding the
    folder imports ``fsarbench``, not the methods)."""
    spec = importlib.util.find_spec("fsarbench.methods")
    folder = Path(next(iter(spec.submodule_search_locations)))
    found: dict[str, tuple[ast.ClassDef, dict[str, ast.expr]]] = {}
    for path in sorted(folder.glob("*.py")):
        body = ast.parse(path.read_text(encoding="utf-8")).body
        # module constants a class attribute may name (``kinds = FEATURE_KINDS``)
        constants = {
            target.id: node.value
            for node in body
            if isinstance(node, ast.Assign)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        for node in body:
            if isinstance(node, ast.ClassDef):
                found.setdefault(node.name, (node, constants))
    return found


def _registered_name(definition: ast.ClassDef) -> str | None:
    """The name ``@MODELS.register_module(name=...)`` gives the class (its own without one);
    None when it is not registered."""
    for decorator in definition.decorator_list:
        if not (isinstance(decorator, ast.Call) and isinstance(decorator.func, ast.Attribute)):
            continue
        if decorator.func.attr != "register_module":
            continue
        for keyword in decorator.keywords:
            if keyword.arg == "name" and isinstance(keyword.value, ast.Constant):
                return keyword.value.value
        return definition.name
    return None


def _literal(value: ast.expr, constants: dict[str, ast.expr]):
    """A literal, or a module constant holding one; ValueError otherwise."""
    if isinstance(value, ast.Name) and value.id in constants:
        value = constants[value.id]
    return ast.literal_eval(value)


def _class_attribute(class_name: str, attribute: str):
    """A class attribute's literal value as written in the class or, else, its bases."""
    if class_name not in _method_class_definitions():
        raise LookupError(class_name)
    definition, constants = _method_class_definitions()[class_name]
    for statement in definition.body:
        if isinstance(statement, ast.Assign):
            targets = statement.targets
        elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
            targets = [statement.target]
        else:
            continue
        if any(isinstance(t, ast.Name) and t.id == attribute for t in targets):
            return _literal(statement.value, constants)
    for base in definition.bases:
        if isinstance(base, ast.Name) and base.id in _method_class_definitions():
            try:
                return _class_attribute(base.id, attribute)
            except LookupError:
                continue
    raise LookupError(f"{class_name}.{attribute}")


def method_class_attributes(type_name: str, attributes: tuple[str, ...]) -> dict | None:
    """Literal class attributes (``feature_kind``, ``paper``; a backbone's ``kinds``) of
    fsarbench's method or backbone class ``type_name``, read from its source without importing
    it, which would import torch: `fsarbench ls methods` and `ls backbones` in well under a
    second instead of four to seven. None when the class is not defined under that name in
    fsarbench's methods (one registered by another package) or a value is not a literal: the
    caller then imports the registry. Tests compare the values with the registered classes'."""
    classes = [
        name
        for name, (definition, _) in _method_class_definitions().items()
        if _registered_name(definition) == type_name
    ]
    if len(classes) != 1:
        return None
    try:
        return {name: _class_attribute(classes[0], name) for name in attributes}
    except (LookupError, ValueError, SyntaxError):
        return None


def method_configs() -> dict[str, Path]:
    """Config name -> file, for ``configs/<method>/<name>.py`` of every registered method.

    ``<method>.py`` is the method's main config; other files in the folder are its variants
    (``protonet_cos_mean``) and are addressed by their own names.
    """
    found: dict[str, Path] = {}
    for root in method_config_roots():
        for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name != "_base_"):
            # fsarbench's own folders are its methods (a test checks each is registered, so
            # names resolve without importing torch); folders elsewhere belong to methods that
            # their configs' custom_imports register when loaded.
            if root == CONFIG_ROOT and not (folder / f"{folder.name}.py").is_file():
                continue
            for path in sorted(folder.glob("*.py")):
                found.setdefault(path.stem, path)
    return found


def resolve_methods(spec: str) -> list[str]:
    """``all`` (every method's main config), names, globs (``protonet*``), comma-separated."""
    configs = method_configs()
    main = [name for name, path in configs.items() if path.parent.name == name]
    chosen: list[str] = []
    for part in [p.strip() for p in spec.split(",") if p.strip()]:
        if part == "all":
            matches = main
        elif any(c in part for c in "*?["):
            matches = fnmatch.filter(configs, part)
        else:
            matches = [part] if part in configs else []
        if not matches:
            raise FsarbenchError(
                f"unknown method {part!r}",
                f"use all, a glob, or one of: {', '.join(configs)} (`fsarbench ls methods`)",
            )
        chosen.extend(m for m in matches if m not in chosen)
    if not chosen:
        raise FsarbenchError("no method named", "pass --methods all, or a name")
    return chosen


def methods_for_backbone(methods: list[str], backbone: str | None) -> tuple[list[str], list[str]]:
    """Split ``methods`` into those that can run on ``backbone`` (None: the benchmarks'
    defaults, which have no text tower) and those that cannot: a head that embeds class names
    needs a CLIP backbone."""
    # a text tower only where the backbone is named; a method's own default backbone
    # (CLIP-FSAR's) is not enough, since `all` on its own means the benchmark's backbone
    has_text = backbone is not None and backbone_info(backbone).has_text_tower
    fits, left_out = [], []
    for method in methods:
        (left_out if method_needs_text(method) and not has_text else fits).append(method)
    return fits, left_out


def method_needs_text(method: str) -> bool:
    """Whether method config ``method``'s head embeds class names (CLIP-FSAR)."""
    from fsarbench.registry import MODELS

    return MODELS.get(load_method_file(method)["method"]["type"]).needs_text


def resolve_benchmarks(spec: str) -> list[Benchmark]:
    chosen: list[Benchmark] = []
    for part in [p.strip() for p in spec.split(",") if p.strip()]:
        benchmark = get_benchmark(part)
        if benchmark not in chosen:
            chosen.append(benchmark)
    if not chosen:
        raise FsarbenchError("no benchmark named", "pass --datasets synth, or another name")
    return chosen


def benchmark_key(benchmark: Benchmark, synth: SynthConfig | None) -> str:
    if benchmark.is_synthetic and synth is not None and synth != SynthConfig():
        return f"{benchmark.name}-{synth.fingerprint}"
    return benchmark.name
