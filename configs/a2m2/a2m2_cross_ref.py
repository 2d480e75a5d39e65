# A²M²-Net reconstruction with DeepEMD's cross-reference node weights instead of the self-guided
# scorer: the other reading of "adaptively selects informative candidate descriptors"
# (methods.md §6.3, step 2). Everything else as a2m2.py.
method = dict(
    type="a2m2",
    reduce_dim=128,
    scales_mode="overlapping",
    window_lengths=(1, 2, 4),
    window_strides=(1, 1, 2),
    spatial_regions="full",
    moment="centred",
    isqrt_iters=5,
    trace_eps=1e-5,
    projection_dim=None,
    cost="cosine",
    weights="cross_ref",
    scorer_hidden=256,  # unused with cross_ref weights
    weight_temperature=1.0,
    solver="exact_lp",
    sinkhorn_epsilon=0.05,
    sinkhorn_iterations=100,
    solver_threads=None,
    kshot="union",
    temperature=12.5,
    learn_temperature=False,
    freeze_bn=True,
)
schedules = dict(
    synth="synth_quick",
    ssv2_full="a2m2_sgd_ssv2_full",
    ssv2_small="a2m2_sgd",
    k100="a2m2_sgd",
    ucf101="a2m2_sgd",
    hmdb51="a2m2_sgd",
)
method_overrides = dict(synth=dict(reduce_dim=32))
