"""Few-shot action recognition methods, installed as ``fsarbench.methods``.

One method = one module here + one folder in ``configs/``. Each registers itself into
``fsarbench.registry.MODELS``; that registry imports this package on first lookup.
"""
