# TRX variant: cardinalities combined by the L2 norm, as in the official trx code (see README.md).
# Everything else, recipes included, as trx.py.
_base_ = "./trx.py"
method = dict(combine="l2")
