#!/usr/bin/env bash
# Sets up a fresh machine for ebsp-jax: a virtual environment with the pinned requirements and,
# where apt-get can be used, the real Fashion-MNIST data (Debian package dataset-fashion-mnist).
# Usage: bash scripts/setup.sh [requirements file, default requirements.txt]
set -euo pipefail
cd "$(dirname "$0")/.."
REQ="${1:-requirements.txt}"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -r "$REQ"
# The package itself, editable: importable from any directory (notebooks, scripts).
.venv/bin/python -m pip install -q --no-deps -e . >/dev/null 2>&1 || .venv/bin/python -m pip install -q --no-deps -e .
DATA=/usr/share/datasets/fashion-mnist
if [ ! -f "$DATA/train-images-idx3-ubyte.gz" ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && SUDO="sudo"
  if command -v apt-get >/dev/null && { [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; }; then
    $SUDO apt-get update -qq >/dev/null && $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null \
      || echo "setup: could not install dataset-fashion-mnist; pass --data_dir to the experiments"
  else
    echo "setup: no apt-get/root here: install the Debian package dataset-fashion-mnist or pass --data_dir"
  fi
fi
# Build the oneDNN int8 GEMM kernel now (else on first use) and say whether it is usable.
.venv/bin/python -c "from ebsp_jax.arith import onednn; r = onednn.status(); print('setup: oneDNN int8 GEMM kernel ' + ('ready' if r is None else 'unavailable (' + r + '); the CPU fast path uses XLA ops'))"
