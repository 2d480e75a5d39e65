"""What starting the command line costs: CPU-seconds of a fresh interpreter running
``fsarbench ARGS`` for a few light commands and errors that need no model, against the naive
way (what every command runs with imported up front: the methods and torch, MMEngine's
runner, SciPy, pandas; as it was before the commands' modules loaded lazily), measured side
by side.

    python tools/speed_startup.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys

COMMANDS = [["--help"], ["status", "--help"], ["check", "--help"], ["report", "--help"]]
COMMANDS += [["run", "--help"], ["ls", "benchmarks"], ["ls", "methods"], ["ls", "backbones"]]
# errors that need no model: refused before torch is imported
COMMANDS += [["run", "--methods", "nope"], ["run", "--datasets", "nope"], ["run", "--shots", "0"]]
EAGER = "import fsarbench.runs, fsarbench.plan, fsarbench.names, fsarbench.status, "
EAGER += "fsarbench.docs, scipy.stats, pandas; "


def cpu_seconds(code: str) -> float:
    """CPU-seconds (user + system) of a child interpreter running ``code``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-c", code], capture_output=True)  # errors exit 2
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"{'command':<28}{'lazy CPU-s':>12}{'eager CPU-s':>13}{'ratio':>8}")
    for argv in COMMANDS:
        run = f"from fsarbench.cli import main; main({argv!r})"
        lazy, eager = [], []
        for _ in range(args.repeats):  # interleaved: the machine's load hits both alike
            lazy.append(cpu_seconds(run))
            eager.append(cpu_seconds(EAGER + run))
        lazy_s, eager_s = statistics.median(lazy), statistics.median(eager)
        name = "fsarbench " + " ".join(argv)
        print(f"{name:<28}{lazy_s:>12.2f}{eager_s:>13.2f}{eager_s / lazy_s:>7.1f}x")


if __name__ == "__main__":
    main()
