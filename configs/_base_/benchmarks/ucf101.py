# Data for the ucf101 benchmark: decord decodes the videos prepared by `fsarbench data`.
benchmark = dict(name="ucf101", decoder="decord")
