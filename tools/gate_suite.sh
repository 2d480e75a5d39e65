#!/usr/bin/env bash
# The small synth suite the regression gate checks (CI runs it after the tests):
#   tools/gate_suite.sh DIR            run it into DIR (a fresh folder), then check DIR
#   tools/gate_suite.sh DIR --write    run it into DIR and write the baseline from DIR instead
# Every registered method, seed 0, 1 and 5 shot, 500 test episodes, with the synth recipe.
set -euo pipefail
cd "$(dirname "$0")/.."
results="${1:?usage: tools/gate_suite.sh RESULTS_DIR [--write]}"
baseline=results/baselines/ci_synth.json
fsarbench=.venv/bin/fsarbench
"$fsarbench" run --methods all --datasets synth --shots 1,5 --seeds 0 --episodes 500 \
    --results-dir "$results"
if [[ "${2:-}" == "--write" ]]; then
    "$fsarbench" check --write-baseline "$baseline" --results-dir "$results"
else
    "$fsarbench" check --baseline "$baseline" --results-dir "$results"
fi
