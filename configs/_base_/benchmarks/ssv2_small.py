# Data for the ssv2-small benchmark: decord decodes the videos prepared by `fsarbench data`.
benchmark = dict(name="ssv2-small", decoder="decord")
