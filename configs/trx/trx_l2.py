# TRX variant: cardinalities combined by the L2 norm, as in the official trx code (see README.md).
method = dict(
    type="trx",
    temporal_set=(2, 3),
    trans_linear_out_dim=1152,
    dropout=0.1,
    positional_encoding=True,
    pe_scale=0.1,
    combine="l2",
    compare_memory_mib=1024,
)
schedules = dict(synth="synth_quick", real="trx_sgd")
method_overrides = dict(synth=dict(trans_linear_out_dim=32))
