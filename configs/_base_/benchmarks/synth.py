# Data for the synth benchmark: decord decodes the videos prepared by `fsarbench data`.
benchmark = dict(name="synth", decoder="decord")
