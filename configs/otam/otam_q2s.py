# OTAM variant: one direction only, query to support (rows = query, padded columns = support),
# the setting the paper is believed to use [M] (see README.md). Everything else as otam.py.
_base_ = "./otam.py"
method = dict(direction="q2s")
