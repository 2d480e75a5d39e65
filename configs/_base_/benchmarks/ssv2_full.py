# Data for the ssv2-full benchmark: decord decodes the videos prepared by `fsarbench data`.
benchmark = dict(name="ssv2-full", decoder="decord")
