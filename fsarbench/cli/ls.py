"""``fsarbench ls``: what the registries hold and what is on this machine."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from fsarbench.benchmarks.prepare import MANIFEST, load_prepared, prepared_folder
from fsarbench.benchmarks.registry import BENCHMARKS, SPLITS, Benchmark
from fsarbench.benchmarks.splits import load_stored_splits, splits_folder
from fsarbench.errors import FsarbenchError


def register(parser) -> None:
    """The options of `fsarbench ls`, on the parser `fsarbench.cli` made for it."""
    what = parser.add_subparsers(dest="ls_command", metavar="WHAT", required=True)
    benchmarks = what.add_parser("benchmarks", help="benchmarks, aliases, counts and local state")
    benchmarks.set_defaults(handler=run_benchmarks)
    methods = what.add_parser("methods", help="registered methods and their configs")
    methods.set_defaults(handler=run_methods)
    backbones = what.add_parser("backbones", help="backbones, their features and weights")
    backbones.set_defaults(handler=run_backbones)


def _counts(benchmark: Benchmark) -> str:
    if benchmark.is_synthetic:
        return "64/12/24 classes, generated"
    classes = "/".join(str(benchmark.split_file(s).n_classes) for s in SPLITS)
    videos = " / ".join(f"{benchmark.split_file(s).n_videos:,}" for s in SPLITS)
    return f"{classes} classes\n{videos} videos"


def split_state(benchmark: Benchmark) -> str:
    if benchmark.is_synthetic:
        return "generated with the videos"
    if not (splits_folder(benchmark) / "splits.json").is_file():
        return f"absent: fsarbench data splits {benchmark.name}"
    try:
        load_stored_splits(benchmark)
    except FsarbenchError as error:
        return f"INVALID: {error.problem}"
    return "verified"


def prepared_state(benchmark: Benchmark) -> str:
    folder = prepared_folder(benchmark)
    if not (folder / MANIFEST).is_file():
        if benchmark.is_synthetic:
            return "not generated: fsarbench data generate synth"
        return "not prepared"
    prepared = load_prepared(folder)
    parts = [
        f"{c.split} {c.present:,}/{c.expected:,} ({c.coverage:.1%})"
        + (f", {c.unusable} unusable" if c.unusable else "")
        for c in prepared.splits.values()
    ]
    kind = "frame folders" if prepared.media == "frames" else "videos"
    return "\n".join([f"{kind}, {'probed' if prepared.probed else 'not probed'}", *parts])


def run_benchmarks(args: argparse.Namespace) -> int:
    table = Table(show_lines=True, title="fsarbench benchmarks")
    for column in ("name", "aliases", "protocol", "counts", "split lists", "prepared"):
        table.add_column(column, overflow="fold")
    for benchmark in BENCHMARKS.values():
        table.add_row(
            benchmark.name,
            ", ".join(benchmark.aliases) or "-",
            benchmark.protocol.partition(":")[0],
            _counts(benchmark),
            split_state(benchmark),
            prepared_state(benchmark),
        )
    Console(width=max(Console().width, 120)).print(table)
    return 0


def run_methods(args: argparse.Namespace) -> int:
    from fsarbench.config import load_method_file
    from fsarbench.names import method_class_attributes, method_configs

    table = Table(title="fsarbench methods (`--methods all` runs the main configs)")
    for column in ("config", "method", "options", "features", "recipes", "paper"):
        table.add_column(column, overflow="fold")
    for name, path in method_configs().items():
        config = load_method_file(name)
        options = config["method"]
        facts = method_class_attributes(options["type"], ("feature_kind", "paper"))
        if facts is None:  # a method another package registers: its class, imported
            from fsarbench.registry import MODELS

            cls = MODELS.get(options["type"])
            facts = {"feature_kind": cls.feature_kind, "paper": cls.paper}
        details = ", ".join(f"{k}={v}" for k, v in options.items() if k != "type")
        recipes = ", ".join(f"{k}: {v}" for k, v in config.get("schedules", {}).items())
        main = "" if name == path.parent.name else " (variant)"
        table.add_row(
            name + main,
            options["type"],
            details,
            facts["feature_kind"],
            recipes or "the benchmark's",
            facts["paper"],
        )
    Console(width=max(Console().width, 120)).print(table)
    return 0


def run_backbones(args: argparse.Namespace) -> int:
    from fsarbench.backbones import all_backbones
    from fsarbench.names import method_class_attributes

    table = Table(show_lines=True, title="fsarbench backbones (`fsarbench run --backbone NAME`)")
    for column in ("name", "what", "features", "weights", "weights pretrained on"):
        table.add_column(column, overflow="fold")
    for info in all_backbones().values():
        facts = method_class_attributes(info.config["type"], ("kinds",))
        if facts is None:  # a backbone another package registers: its class, imported
            from fsarbench.registry import MODELS

            facts = {"kinds": MODELS.get(info.config["type"]).kinds}
        kinds = ", ".join(facts["kinds"])
        if info.must_declare_pretraining:
            pretraining = "must be declared (--pretrained-on)"
        else:
            pretraining = ", ".join(info.weights_pretrained_on) or "as declared (--pretrained-on)"
        table.add_row(info.name, info.summary, kinds, info.weights, pretraining)
    Console(width=max(Console().width, 120)).print(table)
    return 0
