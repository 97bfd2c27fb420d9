#!/usr/bin/env bash
# Issue 3's GPU figures in one call (run on the lent GPU machine from the repository root):
# 8192^3 matmul (native int8/bf16/f32 vs arith fast), ResNet-style conv at batch 256, float32 /
# bf16 / integer-mode ResNet-20 and ResNet-50 (batch 256) with a per-kernel profile and the
# integer networks' optimized HLO. Outputs in ${OUT:-/tmp/ebsp_gpu}.
set -uo pipefail
OUT="${OUT:-/tmp/ebsp_gpu}"; mkdir -p "$OUT"
export JAX_COMPILATION_CACHE_DIR=/tmp/jax_cache JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0
PY="${PY:-python3}"
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,utilization.gpu --format=csv
$PY -c "import jax, flax; print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())"
# PALLAS=1: first the fused int8 GEMM + requantization epilogue (Pallas/Triton) against XLA's
# int8 dot + requant fusion on ResNet-50's 1x1 shapes (~1.5-2 min, bounded by --budget-s).
prc=0
if [ "${PALLAS:-0}" = 1 ]; then
  timeout 280 $PY -m benchmarks.pallas_epilogue --json "$OUT/pallas_epilogue.json" 2>&1 \
    | tee "$OUT/pallas_epilogue.log"
  prc=${PIPESTATUS[0]}
fi
$PY -m benchmarks.arith --size "${SIZE:-8192}" --conv-batch 256 --no-reference --repeats 9 \
  --networks --network-batch 256 --resnet20-batch 1024 --accumulations "${ACCS:-auto,float32,bfloat16}" \
  --profile-dir /tmp/ebsp_prof --hlo-dir "$OUT" --json "$OUT/arith_gpu.json" ${EXTRA:-} 2>&1 | tee "$OUT/log.txt"
rc=${PIPESTATUS[0]}
cp /tmp/ebsp_prof/profiles.json "$OUT/" 2>/dev/null
[ $rc -ne 0 ] || rc=$prc
exit $rc
