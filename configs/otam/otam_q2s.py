# OTAM variant: one direction only, query to support (rows = query, padded columns = support),
# the setting the paper is believed to use [M] (see README.md).
method = dict(
    type="otam",
    lbda=0.1,
    first_col_vertical=False,
    last_col_vertical=True,
    direction="q2s",
    kshot="mean_dist",
)
schedules = dict(synth="synth_quick", real="otam_sgd")
