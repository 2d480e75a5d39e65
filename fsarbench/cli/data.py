"""``fsarbench data``: split lists, preparation of user videos, and the synthetic benchmark."""

from __future__ import annotations

import argparse
import time
from dataclasses import fields
from pathlib import Path

from fsarbench.benchmarks.prepare import format_coverage, prepare_benchmark, prepared_folder
from fsarbench.benchmarks.registry import SPLITS, get_benchmark
from fsarbench.benchmarks.splits import load_stored_splits, store_splits
from fsarbench.benchmarks.synth import SynthConfig, generate_synth
from fsarbench.console import stderr
from fsarbench.errors import FsarbenchError


def register(parser) -> None:
    """The options of `fsarbench data`, on the parser `fsarbench.cli` made for it."""
    commands = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    splits = commands.add_parser(
        "splits", help="download (or import) a benchmark's split lists and verify them"
    )
    splits.add_argument("benchmark", help="benchmark name or alias (fsarbench ls benchmarks)")
    splits.add_argument(
        "--from",
        dest="source",
        type=Path,
        metavar="DIR",
        help="import the split files from this folder instead of downloading them",
    )
    splits.set_defaults(handler=run_splits)

    prepare = commands.add_parser(
        "prepare", help="match split ids to your videos and write annotation lists"
    )
    prepare.add_argument("benchmark")
    media = prepare.add_mutually_exclusive_group(required=True)
    media.add_argument("--videos", type=Path, metavar="DIR", help="folder of video files")
    media.add_argument(
        "--frames",
        type=Path,
        metavar="DIR",
        help="folder of frame folders (<video>/img_00001.jpg ...) instead of videos",
    )
    prepare.add_argument(
        "--no-probe",
        action="store_true",
        help="do not open each video to check it decodes (faster; broken files fail later)",
    )
    prepare.set_defaults(handler=run_prepare)

    names = commands.add_parser(
        "class-names",
        help="store class names for a benchmark whose split lists lack them (SSv2-Full)",
        description="Names for methods that embed class names (clip_fsar). SSv2-Full's OTAM "
        "lists say train0..test23: give SSv2's annotation files (something-something-v2-"
        "train.json and -validation.json), whose templates name each class's videos, or a "
        "JSON object {label: name}.",
    )
    names.add_argument("benchmark")
    names.add_argument("sources", type=Path, nargs="+", metavar="JSON")
    names.set_defaults(handler=run_class_names)

    generate = commands.add_parser("generate", help="generate the built-in synth benchmark")
    generate.add_argument("benchmark", help="only 'synth' can be generated")
    defaults = SynthConfig()
    for field in fields(SynthConfig):
        generate.add_argument(
            "--" + field.name.replace("_", "-"),
            type=type(getattr(defaults, field.name)),
            default=getattr(defaults, field.name),
            help=f"(default {getattr(defaults, field.name)})",
        )
    generate.add_argument("--force", action="store_true", help="generate again even if present")
    generate.set_defaults(handler=run_generate)


def run_class_names(args: argparse.Namespace) -> int:
    from fsarbench.benchmarks.class_names import store_class_names

    benchmark = get_benchmark(args.benchmark)
    path = store_class_names(benchmark, args.sources)
    print(f"{benchmark.name}: class names stored in {path}")
    return 0


def run_splits(args: argparse.Namespace) -> int:
    benchmark = get_benchmark(args.benchmark)
    stored = store_splits(benchmark, args.source)
    print(
        f"{benchmark.name}: split lists verified (sha256 and counts) and stored in {stored.folder}"
    )
    for split in SPLITS:
        split_list = stored.lists[split]
        print(f"  {split:<6}{split_list.n_classes:>4} classes {split_list.n_videos:>8,} videos")
    for note in benchmark.notes:
        print(f"  note: {note}")
    print(f"next: fsarbench data prepare {benchmark.name} --videos DIR")
    return 0


def run_prepare(args: argparse.Namespace) -> int:
    benchmark = get_benchmark(args.benchmark)
    if benchmark.is_synthetic:
        raise FsarbenchError(
            f"{benchmark.name} is prepared when it is generated",
            f"run `fsarbench data generate {benchmark.name}`",
        )
    stored = load_stored_splits(benchmark)
    media = "frames" if args.frames is not None else "video"
    prepared = prepare_benchmark(
        benchmark,
        stored.lists,
        args.frames if args.frames is not None else args.videos,
        prepared_folder(benchmark),
        media=media,
        probe=not args.no_probe,
        progress=stderr.is_terminal,
    )
    print(format_coverage(prepared))
    print(f"annotation lists written to {prepared_folder(benchmark)}")
    return 0


def run_generate(args: argparse.Namespace) -> int:
    benchmark = get_benchmark(args.benchmark)
    if not benchmark.is_synthetic:
        raise FsarbenchError(
            f"{benchmark.name} is a real benchmark and cannot be generated",
            f"run `fsarbench data splits {benchmark.name}` and "
            f"`fsarbench data prepare {benchmark.name} --videos DIR`",
        )
    config = SynthConfig(**{f.name: getattr(args, f.name) for f in fields(SynthConfig)})
    started = time.perf_counter()
    root = generate_synth(config, force=args.force, progress=stderr.is_terminal)
    seconds = time.perf_counter() - started
    from fsarbench.benchmarks.prepare import load_prepared

    print(format_coverage(load_prepared(root / "prepared")))
    print(f"synth (seed {config.seed}, settings {config.fingerprint}) in {root} ({seconds:.1f} s)")
    if config != SynthConfig():
        print("  note: the benchmark name 'synth' refers to the default settings")
    return 0
