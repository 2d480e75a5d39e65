# The ssv2-full benchmark, prepared by `fsarbench data`; the TRX protocol and ResNet-50 by default.
benchmark = dict(
    name="ssv2-full",
    decoder="decord",
    protocol="trx_5way",
    backbone="resnet50",
    schedule="trx_sgd",
)
