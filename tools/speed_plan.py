"""What planning a suite costs before anything runs: the time to build the plan of a suite
(resolving every run's config and identity, hashing the stages' starting weights) and how
often config files are parsed doing it.

    python tools/speed_plan.py                      # the default suite on synth (30 runs)
    python tools/speed_plan.py --methods protonet --seeds 0 --shots 1

Run it where synth is generated (``fsarbench data generate synth``), or the stages after the
data stay pending and cost nothing to plan.
"""

from __future__ import annotations

import argparse
import time

from mmengine.config import Config

from fsarbench.names import methods_for_backbone, resolve_benchmarks, resolve_methods
from fsarbench.plan import build_plan
from fsarbench.runs import SuiteOptions, suite_requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default="all")
    parser.add_argument("--datasets", default="synth")
    parser.add_argument("--shots", default="1,5")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    parses = []
    parse = Config.fromfile

    def counting(filename, *rest, **kwargs):
        parses.append(str(filename))
        return parse(filename, *rest, **kwargs)

    Config.fromfile = staticmethod(counting)
    options = SuiteOptions(progress=False)
    methods = resolve_methods(args.methods)
    if args.methods == "all":  # as `fsarbench run` does: the methods the backbone can run
        methods, _ = methods_for_backbone(methods, None)
    requests = suite_requests(
        methods,
        resolve_benchmarks(args.datasets),
        [None],
        [int(s) for s in args.shots.split(",")],
        [int(s) for s in args.seeds.split(",")],
        None,
        None,
    )
    timings = []
    for _ in range(args.repeats):
        started = time.process_time()
        plan = build_plan(requests, options)
        timings.append(time.process_time() - started)
    first, rest = timings[0], sorted(timings[1:]) or [timings[0]]
    print(f"{len(plan.runs)} runs, {len(plan.stages)} stages")
    print(
        f"first plan (configs parsed, backbones built and hashed): {first:.3f} CPU-s; "
        f"later plans: {rest[len(rest) // 2]:.3f} CPU-s median "
        f"({1000 * rest[len(rest) // 2] / len(plan.runs):.1f} ms per run)"
    )
    print(f"config files parsed: {len(parses)} times, {len(set(parses))} distinct files")


if __name__ == "__main__":
    main()
