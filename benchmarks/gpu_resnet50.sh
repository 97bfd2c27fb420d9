#!/usr/bin/env bash
# Issue 14's device run in one call (GPU machine, repository root): the exactness tests of the
# fast path on the device, the Pallas/Triton fused-epilogue GEMM benchmark, the integer-mode
# ResNet-50 against the same model in bf16 and float32 at batch 256 with a kernel profile and
# its logits checked against the CPU backend, one ADMM + straight-through train step against
# one float step; then benchmarks/gpu_resnet50.py writes $OUT/gpu_resnet50.json.
#
#   OUT=$OUT bash benchmarks/gpu_resnet50.sh              # the device run (~8-9 min, see below)
#   DRY_RUN=1 OUT=/tmp/g bash benchmarks/gpu_resnet50.sh  # CPU rehearsal: tiny sizes (~5 min)
#
# Stages, in order (STAGES=exact,pallas,networks,train picks some): each has its own time
# limit, and the run as a whole stops starting stages DEADLINE_S seconds (default 560) after
# its start, so the call ends inside a 600 s device command; a stage that has too little time
# left is recorded as skipped, not started. $OUT/stages.txt lists each stage's exit status and
# seconds; the JSON is written whatever happened. Exit status: the first failed stage's (124
# for a stage skipped for time), 0 when every selected stage ran and passed.
# The stages write to $WORK; $OUT gets at most 8 files (what a device call brings back): the
# five JSONs (gpu_resnet50, arith_gpu, pallas_epilogue, train_step, profiles) and logs.tar.gz
# (logs, stages.txt, the JUnit XML, the integer network's optimized HLO).
set -uo pipefail
OUT="${OUT:-/tmp/ebsp_gpu}"; mkdir -p "$OUT"
WORK="${WORK:-/tmp/ebsp_gpu_work}"; rm -rf "$WORK"; mkdir -p "$WORK"
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-/tmp/jax_cache}"
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0 PYTHONUNBUFFERED=1
PY="${PY:-python3}"
STAGES="${STAGES:-exact,pallas,networks,train}"
DEADLINE_S="${DEADLINE_S:-560}"
DRY_RUN="${DRY_RUN:-0}"
START=$(date +%s)
: > "$WORK/stages.txt"
rc_all=0

if [ "$DRY_RUN" = 1 ]; then
  NET=resnet20
  EXACT_ARGS=(-k "C64 or highest or target or guard or needs")
  PALLAS_ARGS=(--interpret)
  NET_ARGS=(--networks-which resnet20 --resnet20-batch 4 --accumulations auto,int32
            --check-cpu resnet20 --repeats 2)
  TRAIN_ARGS=(--model lenet5 --batch 8 --image-size 28 --channels 1 --num-classes 10
              --repeats 3 --update-every 2)
else
  NET=resnet50
  EXACT_ARGS=()
  PALLAS_ARGS=(--budget-s 45)
  NET_ARGS=(--networks-which resnet50 --network-batch 256 --accumulations "${ACCS:-auto,int32}"
            --check-cpu resnet50 --repeats 7 --profile-dir "$WORK/prof" --hlo-dir "$WORK")
  TRAIN_ARGS=(--model resnet50 --batch 256 --repeats 10)
fi

# stage NAME LIMIT_S MIN_S CMD...: runs CMD under `timeout` (LIMIT_S, cut to the time left
# before the deadline), or records it as skipped when fewer than MIN_S seconds are left.
stage() {
  local name=$1 limit=$2 min=$3; shift 3
  case ",$STAGES," in *",$name,"*) ;; *) return 0 ;; esac
  local now left t0 rc
  now=$(date +%s); left=$(( DEADLINE_S - (now - START) ))
  if [ "$left" -lt "$min" ]; then
    echo "[gpu_resnet50] $name: skipped (${left}s left before the ${DEADLINE_S}s deadline)"
    echo "$name skipped 0" >> "$WORK/stages.txt"
    [ "$rc_all" -eq 0 ] && rc_all=124
    return 0
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "[gpu_resnet50] $name: start at +$(( now - START ))s, limit ${limit}s"
  t0=$(date +%s)
  timeout "$limit" "$@" 2>&1 | tee "$WORK/$name.log"
  rc=${PIPESTATUS[0]}
  echo "$name $rc $(( $(date +%s) - t0 ))" >> "$WORK/stages.txt"
  echo "[gpu_resnet50] $name: exit $rc after $(( $(date +%s) - t0 ))s"
  [ "$rc" -ne 0 ] && [ "$rc_all" -eq 0 ] && rc_all=$rc
  return 0
}

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu --format=csv
$PY -c "import jax, flax; print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())"

stage exact 150 40 $PY -m pytest -q -p no:cacheprovider ebsp_jax/arith/fast_test.py \
  --junitxml="$WORK/exactness.xml" "${EXACT_ARGS[@]}"
stage pallas 150 60 $PY -m benchmarks.pallas_epilogue --json "$WORK/pallas_epilogue.json" \
  "${PALLAS_ARGS[@]}"
stage networks 330 150 $PY -m benchmarks.arith --only networks --no-reference \
  --json "$WORK/arith_gpu.json" "${NET_ARGS[@]}"
[ -f "$WORK/prof/profiles.json" ] && cp "$WORK/prof/profiles.json" "$WORK/"
stage train 180 90 $PY -m benchmarks.train_step --json "$WORK/train_step.json" "${TRAIN_ARGS[@]}"

$PY -m benchmarks.gpu_resnet50 --dir "$WORK" --network "$NET" --json "$WORK/gpu_resnet50.json"
for f in gpu_resnet50 arith_gpu pallas_epilogue train_step profiles; do
  [ -f "$WORK/$f.json" ] && cp "$WORK/$f.json" "$OUT/"
done
(cd "$WORK" && tar czf "$OUT/logs.tar.gz" --exclude=prof --exclude='*.json' .)
echo "[gpu_resnet50] done at +$(( $(date +%s) - START ))s, exit $rc_all; in $OUT: $(ls "$OUT" | tr '\n' ' ')"
exit $rc_all
