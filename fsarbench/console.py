"""One rich console for progress and messages, on stderr so that stdout stays parseable.

Messages are not wrapped at the console's width (80 columns when stderr is a file): a log, a
Slurm job's output or CI's keeps each message on one line, for grep and for the reader."""

from __future__ import annotations

from rich.console import Console

stderr = Console(stderr=True, highlight=False, soft_wrap=True)
