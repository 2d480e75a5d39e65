# Data for the hmdb51 benchmark: decord decodes the videos prepared by `fsarbench data`.
benchmark = dict(name="hmdb51", decoder="decord")
