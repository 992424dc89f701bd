#!/usr/bin/env bash
# One lent-GPU session in one device call (run deploy/gpu/prepare.sh here first; docs/GPU.md):
# train a fresh `resnet20` INR from a recipe at GPU step counts, and bring back a shippable run.
#   1. setup and checks: wheels, data, versions; the batched INR path against the reference on this
#      device (on a mismatch the run trains with --inr-path reference, and says so); 200 timed steps
#      at widths 8 and 64 (ms and dispatched ops per step)
#   2. training: the recipe from the base alone for the budget left minus RESERVE_S, its step count
#      sized from the measured step time (the schedule is set in steps); every SNAPSHOT_S the run
#      (config, best EMA weights and fixed layers, VAL log) is packed into $OUT/run.tgz by atomic
#      rename, so a kill at the time limit still leaves a shippable run
#   3. results, most important first, each bounded: ship the run, compare it with the shipped
#      checkpoint (verdict on VAL, test paired as a report), evaluate every width 8-64 on the test
#      set, benchmark the Triton kernel against eager and torch.compile at width 64 (K=1 and 100),
#      run the CUDA kernel tests
# What comes back in $OUT (the device tool's folder; ./gpu-out elsewhere), within the tool's limits
# (8 files, 16 MB each): session.log, resnet20-fresh.safetensors, run.tgz and results.tgz
# (selfcheck.json, bench-train.json, train.log, compare.json, eval/, kernel-bench.txt,
# kernel-tests.txt, dmon.txt).
# Knobs (environment): BUDGET_S (480: the whole call), RESERVE_S (100: kept for step 3), RECIPE
# (resnet20), BATCH (the recipe's), SEED (39), EXTRA (more `train hypernet` flags), DEVICE (cuda),
# THREADS (4), VAL_EVERY (steps; default: about 12 validations), VAL_LIMIT (5000), SNAPSHOT_S (30),
# BENCH_STEPS (200), DATA (data/fmnist), RUNS (runs), PY (python3), EVAL_SUBSET (10000),
# COMPARE_LIMIT (all), KERNEL_BENCH / KERNEL_TESTS (1; 0 skips), MAX_STEPS (no cap), SHIP_FLAGS
# (more `train ship` flags; the CPU test's few steps need --allow-inert).
# Give the device call timeout_s = BUDGET_S + 60 or more (the machine's start is not in BUDGET_S).
set -uo pipefail  # not -e: a failed step is logged and the later ones still run
cd "$(dirname "$0")/../.."
START=$(date +%s)

OUT=${OUT:-gpu-out}
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
BUDGET_S=${BUDGET_S:-480}
RESERVE_S=${RESERVE_S:-100}
RECIPE=${RECIPE:-resnet20}
SEED=${SEED:-39}
THREADS=${THREADS:-4}
VAL_LIMIT=${VAL_LIMIT:-5000}
SNAPSHOT_S=${SNAPSHOT_S:-30}
BENCH_STEPS=${BENCH_STEPS:-200}
EVAL_SUBSET=${EVAL_SUBSET:-10000}
DATA=${DATA:-data/fmnist}
RUNS=${RUNS:-runs}
SHIPPED=service/checkpoints/resnet20-fmnist-all.safetensors
TEACHER=$RUNS/teacher-last-w64.safetensors
RUN=$RUNS/gpu-$RECIPE
mkdir -p "$OUT" "$RUNS"
rm -rf "$RUNS/results"
exec > >(tee -a "$OUT/session.log") 2>&1
export PYTHONUNBUFFERED=1
RES=$RUNS/results  # packed into $OUT/results.tgz after every step: a kill loses at most the step it hit
pack() { tar -czf "$OUT/.results.tgz" -C "$RUNS" results && mv -f "$OUT/.results.tgz" "$OUT/results.tgz"; }
left() { echo $((BUDGET_S - ($(date +%s) - START))); }
step() { pack; echo; echo "== $(date -u +%T) ($(left) s left) $*"; }
neumeta() { $PY -m service.cli "$@"; }

if ! $PY -c "import pydantic_settings, fast_tsp, uvicorn" 2> /dev/null; then  # the image lacks them (prepare.sh)
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed: run deploy/gpu/prepare.sh and carry .whl"; exit 1; }
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
[[ -f $DATA/t10k-labels-idx1-ubyte.gz ]] || { echo "no $DATA: run deploy/gpu/prepare.sh and carry it"; exit 2; }
$PY -c "from service.training.recipes import recipe_file; recipe_file('$RECIPE')" 2> /dev/null \
  || { echo "unknown recipe '$RECIPE' (service/training/recipes/)"; exit 2; }

mkdir -p "$RES"
step "1. machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
DMON=""
if command -v nvidia-smi > /dev/null; then nvidia-smi dmon -s pucm -d 5 > "$RES/dmon.txt" 2>&1 & DMON=$!; fi
$PY -c "import sys, torch; print(sys.version.split()[0], 'torch', torch.__version__,
        'cuda', torch.cuda.is_available() and torch.cuda.get_device_name(0))"
git log -1 --format='commit %h %s' 2>/dev/null | cut -c1-120

step "1. selfcheck: the batched INR path against the reference on $DEVICE"
INR_PATH=batched
timeout 60 $PY -m service.cli train selfcheck --recipe "$RECIPE" --device "$DEVICE" --json > "$RES/selfcheck.json"
case $? in
  0) echo "batched path matches: $(cat "$RES/selfcheck.json")" ;;
  *) INR_PATH=reference; echo "MISMATCH or failure: training with --inr-path reference: $(cat "$RES/selfcheck.json")" ;;
esac

step "1. timed steps (batched INR) at widths 8 and 64"
BATCH=${BATCH:-$($PY -c "from service.training.recipes import resolve; print(resolve('$RECIPE', {'base': '-', 'out': '-'}).batch)")}
timeout 90 $PY -m service.cli bench train --recipe "$RECIPE" --widths 8 64 --batches "$BATCH" --inr-path "$INR_PATH" \
  --device "$DEVICE" --steps "$BENCH_STEPS" --warmup 5 --top-ops 15 --json > "$RES/bench-train.json"
MS=$($PY -c "import json, sys; rows = json.load(open(sys.argv[1])); print(max(r['ms_per_step'] for r in rows))" \
  "$RES/bench-train.json" 2>/dev/null) || MS=""
[[ -n $MS ]] || { echo "no step time measured: see bench-train.json"; exit 1; }
echo "slowest step: $MS ms (batch $BATCH)"

step "2. teacher (resnet20-last at width 64, the base) and training"
neumeta generate --arch resnet20-last --width 64 --format safetensors --backend torch -o "$TEACHER" || exit 1
TRAIN_S=$(( $(left) - RESERVE_S )); (( TRAIN_S < 30 )) && TRAIN_S=30
# Steps that fit: the slowest width's time plus 15% for the sandwich's validations and snapshots.
STEPS=$($PY -c "print(max(10, int($TRAIN_S * 1000 / ($MS * 1.15))))")
[[ -n ${MAX_STEPS:-} && $STEPS -gt $MAX_STEPS ]] && STEPS=$MAX_STEPS
VAL_EVERY=${VAL_EVERY:-$(( STEPS / 12 > 0 ? STEPS / 12 : 1 ))}
echo "training $STEPS steps in about $TRAIN_S s (validation every $VAL_EVERY steps)"
rm -rf "$RUN"
snapshot() {  # the run as far as it got, without the optimizer state (last.pt: over a file's 16 MB)
  [[ -f $RUN/config.json ]] || return 0
  # The trainer renames whole files into place, so tar's "file changed as we read it" (exit 1: the
  # log grew) still leaves a consistent copy; exit 2 is a real failure.
  tar -czf "$OUT/.run.tgz" -C "$RUNS" --exclude last.pt --exclude '*.incomplete' "$(basename "$RUN")"
  (( $? <= 1 )) && mv -f "$OUT/.run.tgz" "$OUT/run.tgz"
}
( while sleep "$SNAPSHOT_S"; do snapshot; done ) & SNAPSHOTTER=$!
# shellcheck disable=SC2086  # EXTRA is a list of flags
timeout $((TRAIN_S + 30)) $PY -m service.cli train hypernet --recipe "$RECIPE" --base "$TEACHER" --out "$RUN" \
  --steps "$STEPS" --batch "$BATCH" --seed "$SEED" --device "$DEVICE" --threads "$THREADS" --data "$DATA" \
  --inr-path "$INR_PATH" --val-every "$VAL_EVERY" --val-limit "$VAL_LIMIT" --ckpt-every "$VAL_EVERY" \
  --ckpt-min-seconds "$SNAPSHOT_S" --no-progress ${EXTRA:-} > "$RES/train.log" 2>&1
echo "train exit $?"; tail -5 "$RES/train.log"
kill "$SNAPSHOTTER" 2>/dev/null; snapshot

step "3. ship"
# shellcheck disable=SC2086  # SHIP_FLAGS is a list of flags
neumeta train ship "$RUN" -o "$OUT/resnet20-fresh.safetensors" --samples 1 --threads "$THREADS" ${SHIP_FLAGS:-} \
  > "$RES/ship.log" 2>&1; echo "ship exit $?"; tail -2 "$RES/ship.log"
if [[ -f $OUT/resnet20-fresh.safetensors ]]; then
  step "3. compare with the shipped checkpoint (VAL decides, test reports)"
  timeout 120 $PY -m service.cli compare "$OUT/resnet20-fresh.safetensors" "$SHIPPED" --data "$DATA" --device "$DEVICE" \
    --threads "$THREADS" ${COMPARE_LIMIT:+--limit "$COMPARE_LIMIT"} --out "$RES/compare.json"
  step "3. every width on the test set"
  timeout 150 $PY -m service.cli eval --checkpoint "$OUT/resnet20-fresh.safetensors" --data "$DATA" --device "$DEVICE" \
    --threads "$THREADS" --subset "$EVAL_SUBSET" --no-progress \
    --out "$RES/eval" > "$RES/eval.log" 2>&1; echo "eval exit $?"; tail -12 "$RES/eval.log"
fi
if [[ ${KERNEL_BENCH:-1} == 1 ]]; then
  step "3. kernel benchmark at width 64: Triton, eager, torch.compile; K=1 and K=100"
  timeout 90 $PY -m kernels.bench --device "$DEVICE" --width 64 --samples 1,100 --inr shipped \
    --methods triton,eager,compile > "$RES/kernel-bench.txt" 2>&1; echo "kernel bench exit $?"; tail -8 "$RES/kernel-bench.txt"
fi
if [[ ${KERNEL_TESTS:-1} == 1 ]]; then
  step "3. CUDA kernel tests (compiled kernel against the reference)"
  timeout 60 $PY -m pytest -m "not slow" -q -p no:cacheprovider tests/kernels > "$RES/kernel-tests.txt" 2>&1
  echo "kernel tests exit $?"; tail -3 "$RES/kernel-tests.txt"
fi
[[ -n $DMON ]] && kill "$DMON" 2>/dev/null
step "done"
pack
