"""One rich console for progress and messages, on stderr so that stdout stays parseable."""

from __future__ import annotations

from rich.console import Console

stderr = Console(stderr=True, highlight=False)
