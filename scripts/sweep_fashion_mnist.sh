#!/usr/bin/env bash
# The README's Fashion-MNIST results table: one float model, then one ADMM run per weight format
# starting from it (--pretrained), each ending with float / fake-quant / integer-mode accuracy.
# Usage: bash scripts/sweep_fashion_mnist.sh [RUNS_DIR, default runs/fmnist]   (after scripts/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-runs/fmnist}"
PY=.venv/bin/python
FLAGS=experiments/configs/fashion_mnist.flags
mkdir -p "$RUNS"
# 1. Float training + EBSP 6b(L3) (the main configuration).
$PY experiments/fashion_mnist.py --flagfile=$FLAGS --workdir="$RUNS/6b_L3"
# 2. The other formats from the same float model. name:bits:length
for cfg in 5b_L3:5:3 5b_L2:5:2 4b_L2:4:2 uniform_5b:5:4 uniform_4b:4:3 pow2_8b:8:1 pow2_16b:16:1; do
  IFS=: read -r name bits length <<<"$cfg"
  $PY experiments/fashion_mnist.py --flagfile=$FLAGS --workdir="$RUNS/$name" \
    --pretrained="$RUNS/6b_L3" --float_epochs=0 --pattern_bits="$bits" --pattern_length="$length"
done
$PY -m ebsp_jax.train.summarize "$RUNS"/*/results.json 2>/dev/null || true
