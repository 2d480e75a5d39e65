# TRX (Perrett et al., CVPR 2021), Temporal-Relational CrossTransformers: see README.md.
# combine: sum (default; the paper's, as far as we know) | mean (the official trx code since
# ef0d9b0, and Perrett's few-shot-action-recognition library) | l2 (the official code's first release)
method = dict(
    type="trx",
    temporal_set=(2, 3),
    trans_linear_out_dim=1152,
    dropout=0.1,
    positional_encoding=True,
    pe_scale=0.1,
    combine="sum",
    compare_memory_mib=1024,
)
# Training recipe per benchmark (fragments in configs/_base_/schedules/): the TRX code's SGD
# recipe on every real benchmark; synth uses the quick CPU recipe.
schedules = dict(synth="synth_quick", real="trx_sgd")
# Synth (C = 256) at the paper's 1152-d maps would spend minutes on 10,000 5-shot test episodes
# on two CPU cores; 32-d keys and values keep it to seconds.
method_overrides = dict(synth=dict(trans_linear_out_dim=32))
