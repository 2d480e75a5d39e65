"""The ``fsarbench`` command: a thin layer over importable functions, one module a subcommand."""

from __future__ import annotations

import argparse
import sys

from fsarbench import __version__
from fsarbench.cli import check, compare, config, data, ls, report, run, status
from fsarbench.console import stderr
from fsarbench.errors import FsarbenchError

SUBCOMMANDS = (run, status, report, compare, check, data, ls, config)
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fsarbench",
        description="Few-shot action recognition benchmarks under one seeded protocol.",
    )
    parser.add_argument("--version", action="version", version=f"fsarbench {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in SUBCOMMANDS:
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except FsarbenchError as error:
        stderr.print(f"[bold red]error:[/] {error.problem}", markup=True, soft_wrap=True)
        if error.fix:
            stderr.print(f"  [bold]fix:[/] {error.fix}", markup=True, soft_wrap=True)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # e.g. `fsarbench report | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        stderr.print("interrupted: nothing half-written was kept")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
