"""fsarbench's registries: children of MMAction2's, so MMAction2's transforms, backbones and
datasets resolve from fsarbench configs and fsarbench's own classes resolve by name.

Each registry names the modules that fill it (``locations``); MMEngine imports them on first
lookup, so a class is never "not in the registry" because nobody imported its module.
"""

from __future__ import annotations

from mmaction.registry import DATASETS as MMACTION_DATASETS
from mmaction.registry import MODELS as MMACTION_MODELS
from mmengine.registry import Registry

import fsarbench._quiet  # noqa: F401  (before mmaction and mmengine)

DATASETS = Registry(
    "dataset", parent=MMACTION_DATASETS, scope="fsarbench", locations=["fsarbench.data.dataset"]
)
MODELS = Registry(
    "model", parent=MMACTION_MODELS, scope="fsarbench", locations=["fsarbench.methods"]
)
