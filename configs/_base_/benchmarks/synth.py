# The built-in benchmark at its default settings, with the small backbone and 56-pixel crops so
# that the whole suite runs on two CPU cores.
benchmark = dict(
    name="synth",
    decoder="decord",
    protocol="synth_5way",
    backbone="resnet18_synth",
    schedule="synth_quick",
)
