"""Few-shot action recognition methods, installed as ``fsarbench.methods``.

One method = one module here + one folder in ``configs/``. ``fsarbench.registry.MODELS`` names
this package as its location, so the imports below run on the registry's first lookup and
every method is registered explicitly, never by the accident of an earlier import.
"""

from fsarbench.methods import a2m2, backbones, hf_backbones, otam, protonet, ta2n, trx  # noqa: F401
from fsarbench.methods.base import FewShotRecognizer

__all__ = ["FewShotRecognizer"]
