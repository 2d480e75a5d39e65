#!/usr/bin/env bash
# The records behind the README's synth leaderboard (results/synth), from whatever cache
# FSARBENCH_HOME holds (an empty one recomputes everything: about an hour on 2 CPU cores):
#   tools/synth_results.sh DIR     run them into DIR, then: fsarbench report --results-dir DIR
# The default suite (5 methods, 1 and 5 shot, seeds 0-2, 10,000 episodes), the variants of
# record, and two reference rows: the untrained backbone and end-to-end finetuning (seed 0).
set -euo pipefail
cd "$(dirname "$0")/.."
results="${1:?usage: tools/synth_results.sh RESULTS_DIR}"
fsarbench=.venv/bin/fsarbench
"$fsarbench" run --results-dir "$results"
"$fsarbench" run --methods a2m2_cross_ref,otam_q2s,protonet_cos_framewise,trx_l2 \
    --results-dir "$results"
"$fsarbench" run --methods protonet --train none --results-dir "$results"
"$fsarbench" run --methods protonet --train finetune --seeds 0 --results-dir "$results"
