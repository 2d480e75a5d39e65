"""fsarbench's MMEngine configs, installed as ``fsarbench.configs``.

``_base_/`` holds one-level fragments (protocols, benchmarks); a method's leaf configs compose
them and inherit from nothing else.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path

CONFIG_ROOT = Path(__file__).resolve().parent


def config_path(relative: str) -> Path:
    """Absolute path of a config shipped with fsarbench, e.g. ``_base_/protocols/trx_5way.py``."""
    return CONFIG_ROOT / relative


@functools.cache
def _parse(path: str, modified_ns: int, size: int) -> dict:
    from mmengine.config import Config

    return Config.fromfile(path).to_dict()


def read_config(path: Path) -> dict:
    """A config file's variables as plain dicts, parsed once per process (a suite composes
    many runs from the same few files; MMEngine parses a file in tens of milliseconds).

    Each call returns a fresh copy, so callers may change it; a file edited since its last
    parse (same path, other modification time or size) is parsed again."""
    stat = Path(path).stat()
    return copy.deepcopy(_parse(str(path), stat.st_mtime_ns, stat.st_size))
