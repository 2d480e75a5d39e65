# ProtoNet for video (Snell et al., NeurIPS 2017), frame-averaged: see README.md.
# metric: sqeuclid_mean (default) | cos_mean | cos_framewise | tsn_ln_dot
method = dict(type="protonet", metric="sqeuclid_mean", temperature=10.0, learn_temperature=False)
