# A²M²-Net reconstruction with DeepEMD's cross-reference node weights instead of the self-guided
# scorer: the other reading of "adaptively selects informative candidate descriptors"
# (step 2 of the A² module in README.md). Everything else, recipes included, as a2m2.py.
_base_ = "./a2m2.py"
method = dict(weights="cross_ref")  # no scorer is built: scorer_hidden is unused
# on synth only the reduction is narrowed (a2m2.py also narrows the scorer, which has none here)
method_overrides = dict(synth=dict(_delete_=True, reduce_dim=32))
