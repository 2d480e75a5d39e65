"""``fsarbench compare A B``: a paired test of two methods on the episodes they share."""

from __future__ import annotations

import argparse
from pathlib import Path

from fsarbench.compare import TEST_NAME, MethodSpec, compare_methods, format_p
from fsarbench.errors import FsarbenchError
from fsarbench.results import load_records


def register(parser) -> None:
    """The options of `fsarbench compare`, on the parser `fsarbench.cli` made for it."""
    parser.description = (
        "Compares A and B episode by episode on every benchmark, shot, backbone "
        f"and training both ran: the mean difference A - B, its 95%% interval and the p-value "
        f"of a {TEST_NAME}. A method may name its training: protonet:none."
    )
    parser.add_argument(
        "a", type=MethodSpec.parse, metavar="A", help="method[+TAG or ~HASH][:training]"
    )
    parser.add_argument(
        "b", type=MethodSpec.parse, metavar="B", help="method[+TAG or ~HASH][:training]"
    )
    parser.add_argument(
        "--datasets", default=None, help="benchmarks to compare on (default: every one)"
    )
    parser.add_argument("--results-dir", type=Path, default=Path("results"))
    parser.set_defaults(handler=run)


def benchmark_names(spec: str | None) -> list[str] | None:
    from fsarbench.names import resolve_benchmarks  # names and configs: when it runs

    return None if spec is None else [b.name for b in resolve_benchmarks(spec)]


def matches_benchmark(record_benchmark: str, names: list[str] | None) -> bool:
    # non-default synth settings are recorded as synth-<settings hash>
    return names is None or any(
        record_benchmark == name or (record_benchmark.startswith(f"{name}-") and name == "synth")
        for name in names
    )


def run(args: argparse.Namespace) -> int:
    import pandas as pd  # here: `fsarbench compare --help` does not pay for it

    names = benchmark_names(args.datasets)
    records = load_records(args.results_dir)
    wanted = sorted({r.benchmark for r in records if matches_benchmark(r.benchmark, names)})
    if names and not wanted:
        raise FsarbenchError(
            f"no result records on {', '.join(names)} in {args.results_dir}",
            "run the methods there first, or pass --results-dir",
        )
    comparisons = compare_methods(records, args.a, args.b, wanted if names else None)
    rows = [
        {
            "benchmark": c.benchmark,
            "episodes": f"{c.n_way}-way {c.k_shot}-shot",
            "backbone": c.backbone,
            "training": c.training_a
            if c.training_a == c.training_b
            else f"{c.training_a} vs {c.training_b}",
            "seeds": ",".join(map(str, c.seeds)),
            "paired episodes": f"{c.result.n_pairs:,}",
            str(args.a): f"{c.result.mean_a:.2f}",
            str(args.b): f"{c.result.mean_b:.2f}",
            "A - B": f"{c.result.difference:+.2f} ± {c.result.ci95:.2f}",
            "p": format_p(c.result.p_value),
        }
        for c in comparisons
    ]
    print(pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True))
    print(
        f"\nA = {args.a}, B = {args.b}. Accuracy (%) over the paired episodes; A - B: mean "
        f"difference ± 95% t interval; p: {TEST_NAME}."
    )
    return 0
