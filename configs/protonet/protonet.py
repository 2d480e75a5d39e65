# ProtoNet for video (Snell et al., NeurIPS 2017), frame-averaged: see README.md.
# metric: sqeuclid_mean (default) | cos_mean | cos_framewise | tsn_ln_dot
method = dict(type="protonet", metric="sqeuclid_mean", temperature=10.0, learn_temperature=False)
# Training recipe per benchmark (fragments in configs/_base_/schedules/): the video ProtoNet of
# the FSAR reimplementations trains like TRX (SGD lr 1e-3, 16 tasks per batch); synth uses the
# quick CPU recipe.
schedules = dict(synth="synth_quick", real="trx_sgd")
