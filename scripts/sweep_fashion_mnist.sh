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
# 1. The float model (8 epochs; its results.json also has the 6b(L3) post-training projection).
$PY experiments/fashion_mnist.py --flagfile=$FLAGS --workdir="$RUNS/float" \
  --float_epochs=8 --admm_epochs=0 --finetune_epochs=0 --integer_eval=false
# 2. Every format from that float model: 2 epochs ADMM + 0.5 fine-tuning. name:bits:length
for cfg in 6b_L3:6:3 5b_L3:5:3 5b_L2:5:2 4b_L2:4:2 uniform_5b:5:4 uniform_4b:4:3 pow2_8b:8:1 pow2_16b:16:1; do
  IFS=: read -r name bits length <<<"$cfg"
  $PY experiments/fashion_mnist.py --flagfile=$FLAGS --workdir="$RUNS/$name" \
    --pretrained="$RUNS/float" --float_epochs=0 --pattern_bits="$bits" --pattern_length="$length"
done
# 3. Control: the same extra epochs with float weights and activations.
$PY experiments/fashion_mnist.py --flagfile=$FLAGS --workdir="$RUNS/control_float" \
  --pretrained="$RUNS/float" --float_epochs=0 --pattern_bits=16 --pattern_length=15 --activation_bits=0
$PY -m ebsp_jax.train.summarize "$RUNS"/*/results.json
