#!/usr/bin/env bash
# The README's Fashion-MNIST results table, over several seeds. Per seed: one float model, then
# per weight format (a) a post-training projection of that float model (no ADMM) and (b) an ADMM
# run from it (--pretrained), each ending with float / fake-quant / integer-mode accuracy; and a
# control with float weights and activations. All formats share every hyper-parameter.
# Usage: bash scripts/sweep_fashion_mnist.sh [RUNS_DIR, default runs/fmnist] [SEED ...]
#        (default seeds 0 1 2; after scripts/setup.sh). Runs one training at a time; a run whose
#        results.json exists is skipped, so a stopped sweep continues where it was.
# Environment: FORMATS="name:bits:length ..." (default: the eight below); QUANT_FLAGS, extra
#   flags for the PTQ and ADMM runs (e.g. "--per_channel=false"); CONTROL=0 skips the control;
#   PTQ=0 skips the PTQ runs; MODEL (default: the flags file's, lenet5) and FLOAT_EPOCHS
#   (default 8), e.g. MODEL=resnet20 FLOAT_EPOCHS=3 for the README's ResNet-20 rows.
#   A float model already in RUNS_DIR/seedS/float (e.g. a symlink to another sweep's) is reused.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-runs/fmnist}"
shift || true
SEEDS=("$@")
[ ${#SEEDS[@]} -gt 0 ] || SEEDS=(0 1 2)
PY=.venv/bin/python
FLAGS=experiments/configs/fashion_mnist.flags
FORMATS="${FORMATS:-6b_L3:6:3 5b_L3:5:3 5b_L2:5:2 4b_L2:4:2 uniform_5b:5:4 uniform_4b:4:3 pow2_16b:16:1 pow2_8b:8:1}"
read -r -a QUANT <<<"${QUANT_FLAGS:-}"
MODEL_FLAG=()
[ -n "${MODEL:-}" ] && MODEL_FLAG=(--model="$MODEL")

run() {  # run WORKDIR FLAGS...: one training run unless its results.json exists
  local dir="$1"; shift
  if [ -f "$dir/results.json" ]; then echo "skip $dir (done)"; return; fi
  echo "run $dir"
  $PY experiments/fashion_mnist.py --flagfile=$FLAGS ${MODEL_FLAG[@]+"${MODEL_FLAG[@]}"} \
    --workdir="$dir" "$@"
}

for seed in "${SEEDS[@]}"; do
  S="$RUNS/seed$seed"
  # 1. The float model, 8 epochs (FLOAT_EPOCHS).
  run "$S/float" --seed="$seed" --float_epochs="${FLOAT_EPOCHS:-8}" --admm_epochs=0 \
    --finetune_epochs=0 --integer_eval=false
  for cfg in $FORMATS; do
    IFS=: read -r name bits length <<<"$cfg"
    # 2a. Post-training projection: the float model's weights projected onto the grid with
    #     fitted per-channel scales, no ADMM. The 0.25-epoch "fine-tune" at a vanishing learning
    #     rate only calibrates the 8-bit activation ranges (LeNet-5 has no batch norm; the
    #     kernels are frozen in that phase, the biases move by < 1e-10).
    [ "${PTQ:-1}" = 0 ] || run "$S/ptq_$name" --seed="$seed" --pretrained="$S/float" \
      --float_epochs=0 --admm_epochs=0 --finetune_epochs=0.25 --finetune_learning_rate=1e-12 \
      --pattern_bits="$bits" --pattern_length="$length" ${QUANT[@]+"${QUANT[@]}"}
    # 2b. ADMM: 2 epochs ADMM + 0.5 epoch fine-tuning (flags file) from the float model.
    run "$S/$name" --seed="$seed" --pretrained="$S/float" --float_epochs=0 \
      --pattern_bits="$bits" --pattern_length="$length" ${QUANT[@]+"${QUANT[@]}"}
  done
  [ "${CONTROL:-1}" = 0 ] && continue
  # 3. Control: the same extra epochs with float weights and activations.
  run "$S/control_float" --seed="$seed" --pretrained="$S/float" --float_epochs=0 \
    --pattern_bits=16 --pattern_length=15 --activation_bits=0
done
$PY -m ebsp_jax.train.summarize "$RUNS"/seed*/*/results.json
