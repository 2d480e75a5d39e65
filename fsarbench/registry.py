"""fsarbench's registries: children of MMAction2's, so MMAction2's transforms, backbones and
datasets resolve from fsarbench configs and fsarbench's own classes resolve by name.

Each registry names the modules that fill it (``locations``); MMEngine imports them on first
lookup, so a class is never "not in the registry" because nobody imported its module.
"""

from __future__ import annotations

from mmaction.registry import DATASETS as MMACTION_DATASETS
from mmaction.registry import MODELS as MMACTION_MODELS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import DefaultScope, Registry


class ScopedRegistry(Registry):
    """A registry that always builds in its own scope.

    MMEngine resolves a type name in the current default scope, and a Runner sets that to its
    own for the rest of the process; fsarbench's builds must not depend on whether a Runner
    happened to run before them.
    """

    def build(self, cfg, *args, **kwargs):
        with DefaultScope.overwrite_default_scope(self.scope):
            return super().build(cfg, *args, **kwargs)


DATASETS = ScopedRegistry(
    "dataset", parent=MMACTION_DATASETS, scope="fsarbench", locations=["fsarbench.data.dataset"]
)
MODELS = ScopedRegistry(
    "model", parent=MMACTION_MODELS, scope="fsarbench", locations=["fsarbench.methods"]
)
LOOPS = Registry("loop", parent=MMENGINE_LOOPS, scope="fsarbench", locations=["fsarbench.training"])
# fsarbench builds datasets in its own scope, and their pipelines resolve through the transform
# registry of that scope: it holds nothing itself, MMAction2's transforms are named with their
# "mmaction." scope, but the scope must exist or MMEngine warns on every dataset.
TRANSFORMS = Registry("transform", parent=MMENGINE_TRANSFORMS, scope="fsarbench")
# Direct children of MMEngine's roots: the Runner builds loops and metrics through the roots,
# which find a scoped type ("fsarbench.EpisodicValLoop") only among their direct children.
METRICS = Registry(
    "metric", parent=MMENGINE_METRICS, scope="fsarbench", locations=["fsarbench.training"]
)
