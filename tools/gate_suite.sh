#!/usr/bin/env bash
# The small synth suite the regression gate checks (CI runs it after the tests):
#   tools/gate_suite.sh DIR               run it into DIR (a fresh folder), then check DIR
#   tools/gate_suite.sh DIR --write [R]   run it R times into DIR (training replicates 0 .. R-1,
#                                         default 5) and write the baseline from all of them
# Every registered method, seed 0, 1 and 5 shot, 500 test episodes, with the synth recipe.
# The replicates retrain everything (pretraining included) from initial weights perturbed at
# float rounding's scale, on the same test episodes: their spread is the training noise the
# gate allows for, which is what a baseline written on one machine cannot pin down on another.
set -euo pipefail
cd "$(dirname "$0")/.."
results="${1:?usage: tools/gate_suite.sh RESULTS_DIR [--write [REPLICATES]]}"
baseline=results/baselines/ci_synth.json
fsarbench=.venv/bin/fsarbench
suite=(run --methods all --datasets synth --shots 1,5 --seeds 0 --episodes 500
    --results-dir "$results")
if [[ "${2:-}" == "--write" ]]; then
    replicates="${3:-5}"
    for ((replicate = 0; replicate < replicates; replicate++)); do
        "$fsarbench" "${suite[@]}" --replicate "$replicate"
    done
    "$fsarbench" check --write-baseline "$baseline" --results-dir "$results"
else
    "$fsarbench" "${suite[@]}"
    "$fsarbench" check --baseline "$baseline" --results-dir "$results"
fi
