"""fsarbench's MMEngine configs, installed as ``fsarbench.configs``.

``_base_/`` holds one-level fragments (protocols, benchmarks); a method's leaf configs compose
them and inherit from nothing else.
"""

from __future__ import annotations

from pathlib import Path

CONFIG_ROOT = Path(__file__).resolve().parent


def config_path(relative: str) -> Path:
    """Absolute path of a config shipped with fsarbench, e.g. ``_base_/protocols/trx_5way.py``."""
    return CONFIG_ROOT / relative
