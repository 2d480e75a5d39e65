"""Where fsarbench keeps its files on a user's machine.

``FSARBENCH_HOME`` moves everything under one folder (tests and CI use a temporary one);
otherwise split lists and prepared annotations live in the platform's user data folder and the
generated ``synth`` benchmark in the user cache folder, since it can always be made again.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "fsarbench"


def _home() -> Path | None:
    value = os.environ.get("FSARBENCH_HOME")
    return Path(value).expanduser().resolve() if value else None


def data_dir() -> Path:
    """Split lists and prepared annotation lists of the real benchmarks."""
    home = _home()
    return home / "data" if home else Path(platformdirs.user_data_dir(APP_NAME))


def cache_dir() -> Path:
    """Things that can be regenerated: the synthetic benchmark, later the feature store."""
    home = _home()
    return home / "cache" if home else Path(platformdirs.user_cache_dir(APP_NAME))


def benchmark_dir(name: str) -> Path:
    return data_dir() / "benchmarks" / name
