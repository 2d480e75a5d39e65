# The hmdb51 benchmark, prepared by `fsarbench data`; the TRX protocol and ResNet-50 by default.
benchmark = dict(
    name="hmdb51",
    decoder="decord",
    protocol="trx_5way",
    backbone="resnet50",
    schedule="trx_sgd",
)
