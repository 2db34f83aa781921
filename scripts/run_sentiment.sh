#!/usr/bin/env bash
# The sentiment runs kept under results/sentiment/ (SET vs dense, IMDB, SST-2, UCI over 5 folds).
#   scripts/run_sentiment.sh [DATA_DIR] [PYTHON]      # re-running skips configs already kept
# Each run resumes from its checkpoint if killed; finished runs are copied into results/ by
# scripts/results.py keep.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data}
PYTHON=${2:-.venv/bin/python}

run() {  # config [fold]
  local config=$1 fold=${2:-} name=$1 extra=()
  if [[ -n "$fold" ]]; then name="$config/fold_$fold"; extra=(--fold="$fold"); fi
  if [[ -f "results/sentiment/$name/results.json" ]]; then return; fi
  "$PYTHON" sentiment/train.py --flagfile="sentiment/configs/$config.flags" --data_dir="$DATA" \
      --workdir="runs/sentiment/$name" "${extra[@]}"
  "$PYTHON" scripts/results.py keep "runs/sentiment/$name" --trainer sentiment --config "$name"
}

for config in imdb_dense imdb_set imdb_dense_small imdb_iss sst2_dense sst2_set \
    imdb_lobacheva_dense imdb_sparsevd_w imdb_sparsevd_wn imdb_sparsevd_wgn; do
  run "$config"
done
for set in amazon imdb yelp; do
  for fold in 0 1 2 3 4; do
    run "uci_${set}_dense" "$fold"
    run "uci_${set}_set" "$fold"
  done
done
