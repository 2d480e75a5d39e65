"""``fsarbench config``: print the merged config of a run."""

from __future__ import annotations

import argparse

from fsarbench.benchmarks.registry import get_benchmark
from fsarbench.config import TRAINING_MODES, compose_run_config, config_hash


def register(parser) -> None:
    """The options of `fsarbench config`, on the parser `fsarbench.cli` made for it."""
    parser.add_argument("method", help="a method config name (fsarbench ls methods)")
    parser.add_argument("benchmark", nargs="?", default="synth", help="default: synth")
    parser.add_argument("--way", type=int, default=None)
    parser.add_argument("--shot", type=int, default=None)
    parser.add_argument("--episodes", type=int, default=None)
    parser.add_argument("--backbone", default=None, help="default: the benchmark's")
    parser.add_argument("--train", choices=TRAINING_MODES, default=None)
    parser.add_argument("--pretrain", action=argparse.BooleanOptionalAction, default=None)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from fsarbench.names import resolve_methods  # names and configs: when it runs

    (method,) = resolve_methods(args.method)[:1]
    config = compose_run_config(
        method,
        get_benchmark(args.benchmark),
        n_way=args.way,
        k_shot=args.shot,
        episodes=args.episodes,
        backbone=args.backbone,
        training=args.train,
        pretrain=args.pretrain,
    )
    print(config.pretty_text)
    print(f"# config hash: {config_hash(config)}")
    return 0
