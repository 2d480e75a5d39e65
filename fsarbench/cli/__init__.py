"""The ``fsarbench`` command: a thin layer over importable functions, one module a subcommand."""

from __future__ import annotations

import argparse
import errno
import importlib
import sys
import traceback

from fsarbench import __version__
from fsarbench.console import stderr
from fsarbench.errors import FsarbenchError

# Each command's module (fsarbench.cli.NAME: ``register(parser)`` adds its options, and its
# handler) is imported only when that command runs, so `fsarbench --help` and a light
# command do not pay for torch, MMEngine and the methods; here is what `--help` lists.
COMMANDS = {
    "run": "test methods on benchmarks (no arguments: the default suite on synth)",
    "status": "where the latest suite stands: each run done, running, queued or failed",
    "report": "leaderboard tables from result records",
    "compare": "paired test of two methods on shared episodes",
    "check": "fail when results regress against a committed baseline",
    "data": "get split lists, prepare videos, generate synth",
    "ls": "list benchmarks and their state on this machine",
    "config": "print the merged config of a run",
}
EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3  # a bug: never 1 (a regression in `check`) or 2 (bad input)
EXIT_INTERRUPTED = 130
# What the filesystem refuses: a user's problem with a fix, not fsarbench's bug.
STORAGE_ERRORS = {
    errno.ENOSPC: "free space there, or point --results-dir / FSARBENCH_HOME elsewhere",
    errno.EDQUOT: "free space within your quota, or point --results-dir / FSARBENCH_HOME elsewhere",
    errno.EACCES: "make it writable, or point --results-dir / FSARBENCH_HOME elsewhere",
    errno.EPERM: "make it writable, or point --results-dir / FSARBENCH_HOME elsewhere",
    errno.EROFS: "the filesystem is read-only: point --results-dir / FSARBENCH_HOME elsewhere",
    errno.ENOTDIR: "a file stands where a folder is needed: move it, or choose another path",
    errno.EISDIR: "a folder stands where a file is needed: move it, or choose another path",
}


class OptionParser(argparse.ArgumentParser):
    """argparse, with a malformed command line said in one message and its fix (the help of
    the command), not the whole usage block: the same form as every other bad input."""

    def error(self, message: str):
        stderr.print(f"[bold red]error:[/] {self.prog}: {message}", markup=True, soft_wrap=True)
        stderr.print(
            f"  [bold]fix:[/] `{self.prog} --help` lists the options", markup=True, soft_wrap=True
        )
        raise SystemExit(EXIT_BAD_INPUT)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The command line's parser, with the options of the command ``argv`` names (its first
    word that is not an option); ``argv`` None: of every command."""
    parser = OptionParser(
        prog="fsarbench",
        description="Few-shot action recognition benchmarks under one seeded protocol.",
    )
    parser.add_argument("--version", action="version", version=f"fsarbench {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    named = None if argv is None else next((a for a in argv if not a.startswith("-")), "")
    for name, help_text in COMMANDS.items():
        command = subparsers.add_parser(name, help=help_text)
        if named is None or named == name:
            importlib.import_module(f"fsarbench.cli.{name}").register(command)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser(argv).parse_args(argv)
    except SystemExit as done:  # --help, --version (0) or a malformed command line (2)
        return int(done.code or 0)
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
        stderr.print(
            "interrupted: nothing half-written was kept; the same command resumes (finished runs "
            "and stages are kept, a training goes on from its last checkpoint)",
            soft_wrap=True,
        )
        return EXIT_INTERRUPTED
    except OSError as error:
        if error.errno not in STORAGE_ERRORS:
            return _internal_error(error)
        where = error.filename or "a file"
        problem = f"[bold red]error:[/] {where}: {error.strerror}"
        stderr.print(problem, markup=True, soft_wrap=True)
        stderr.print(f"  [bold]fix:[/] {STORAGE_ERRORS[error.errno]}", markup=True, soft_wrap=True)
        return EXIT_BAD_INPUT
    except Exception as error:  # a bug: said as one, with its traceback
        return _internal_error(error)


def _internal_error(error: BaseException) -> int:
    sys.stderr.write("".join(traceback.format_exception(error)))
    stderr.print(
        f"[bold red]internal error:[/] {type(error).__name__}: {error} (a bug in fsarbench "
        f"{__version__}; please report it with the traceback above)",
        markup=True,
        soft_wrap=True,
    )
    return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
