#!/usr/bin/env bash
# The main job on a fresh machine: set up, train LeNet-5 on the real Fashion-MNIST with EBSP 6b(L3)
# weights (float -> ADMM QAT -> hard projection + fine-tuning), evaluate float / fake-quant /
# integer mode (the bit-exact LUT+shift datapath), then the energy/latency/area report against
# Eyeriss, BitFusion, WAX and OLAccel using the trained weights' statistics.
# Outputs in runs/main/: results.json, params.npz, quantized_model.safetensors (the integer model
# the hardware report reads: codes, scales, formats, activation scales; docs/artifact.md),
# hardware.json, TensorBoard events, checkpoints.
# Killed? Run it again: training resumes from its last checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
RUN="${RUN:-runs/main}"
.venv/bin/python experiments/fashion_mnist.py --flagfile=experiments/configs/fashion_mnist.flags \
  --workdir="$RUN" "$@"
.venv/bin/python experiments/hardware.py --run="$RUN" --output="$RUN/hardware.json"
