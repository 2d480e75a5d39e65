"""Silence, precisely, the third-party noise that says nothing to an fsarbench user.

Each filter names one message; nothing else is hidden. Imported by the package's __init__,
before any module imports MMAction2, MMEngine or mmcv.
"""

from __future__ import annotations

import logging
import warnings

# mmcv-lite has no compiled ops; recognition never needs this one.
warnings.filterwarnings(
    "ignore", message=r"Fail to import ``MultiScaleDeformableAttention``", category=UserWarning
)
# torch 2.13 deprecates torch.jit.script/interface, which mmengine and mmcv call at import.
warnings.filterwarnings(
    "ignore", message=r"`torch\.jit\.(script|interface)` is deprecated", category=DeprecationWarning
)

# MMEngine's Runner sets MKL_NUM_THREADS for data-loader workers and says so, once per rank.
warnings.filterwarnings(
    "ignore", message=r"Setting MKL_NUM_THREADS environment variable", category=UserWarning
)

# MMEngine's Runner sets the start method of its data-loader workers to fork, and warns when
# the process was itself started by spawn (the worker processes of `fsarbench run --jobs`).
warnings.filterwarnings(
    "ignore", message=r"Multi-processing start method `fork` is different", category=UserWarning
)


class _DropMessages(logging.Filter):
    """Drops MMEngine log records that start with one of the given texts."""

    def __init__(self, *prefixes: str) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        # The Runner's environment dump starts with a newline and a dashed rule.
        return not str(record.getMessage()).lstrip("\n-").startswith(self.prefixes)


def quiet_mmengine_logger() -> None:
    """The decode transforms log 'FileClient will be deprecated' once per worker through
    MMEngine's logger; the message is about MMEngine's internals, not the user's data."""
    from mmengine.logging import MMLogger

    logger = MMLogger.get_current_instance()
    if not any(isinstance(f, _DropMessages) for f in logger.filters):
        logger.addFilter(
            _DropMessages('"FileClient" will be deprecated', '"HardDiskBackend" is the alias')
        )
