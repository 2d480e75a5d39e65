# Data for the k100 benchmark: decord decodes the videos prepared by `fsarbench data`.
benchmark = dict(name="k100", decoder="decord")
