# OTAM (Cao et al., CVPR 2020), canonical recursion: see README.md.
# lbda: soft-min smoothing (0 = hard min); first_col_vertical: the reimplementations' extra
# vertical move in the first real column; last_col_vertical: the free end (False = the 2-term
# bug of Perrett's library); direction: q2s | s2q | avg | sum | timeflip_avg; kshot: mean_dist |
# proto_first.
method = dict(
    type="otam",
    lbda=0.1,
    first_col_vertical=False,
    last_col_vertical=True,
    direction="avg",
    kshot="mean_dist",
)
# Training recipe per benchmark (fragments in configs/_base_/schedules/): Perrett's OTAM recipe
# (SGD lr 1e-3, 1 task per step, 100k tasks) on the real benchmarks; synth uses the quick CPU
# recipe, where OTAM has no parameters to train on the frozen backbone.
schedules = dict(synth="synth_quick", real="otam_sgd")
