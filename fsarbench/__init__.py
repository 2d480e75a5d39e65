"""fsarbench: a reproducible benchmark harness for few-shot action recognition."""

# Installs precise warning filters for third-party import-time noise. It must run before any
# MMEngine, mmcv or MMAction2 import, and the package's __init__ runs before every submodule.
from fsarbench import _quiet  # noqa: F401

__version__ = "0.1.0"
