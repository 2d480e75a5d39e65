# TRX variant: cardinalities combined by the L2 norm, as in the official trx code's first release
# (commit db3f17b; it averages them since ef0d9b0, see README.md).
# Everything else, recipes included, as trx.py.
_base_ = "./trx.py"
method = dict(combine="l2")
