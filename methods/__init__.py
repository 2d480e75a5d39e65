"""Few-shot action recognition methods, installed as ``fsarbench.methods``.

One method = one module here + one folder in ``configs/``. ``fsarbench.registry.MODELS`` names
this package as its location, so the imports below run on the registry's first lookup and
every method is registered explicitly, never by the accident of an earlier import.
"""

from fsarbench.methods import (  # noqa: F401
    a2m2,
    backbones,
    clip_fsar,
    hf_backbones,
    otam,
    protonet,
    ta2n,
    trx,
)
from fsarbench.methods.base import FewShotRecognizer

__all__ = ["FewShotRecognizer"]
