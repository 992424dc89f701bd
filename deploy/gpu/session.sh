#!/usr/bin/env bash
# One lent-GPU session in one device call (run deploy/gpu/prepare.sh here first; docs/GPU.md):
#   1. the kernel tests, compiled for the GPU, against the PyTorch reference; CUDA training
#   2. continuations of the shipped `resnet20` INR, the CPU sessions' recipe at GPU step counts,
#      one per variant, side by side (small kernels leave the GPU mostly idle: on the H100 three
#      runs together made 30 steps/s each against 44 alone); each variant's best EMA weights are
#      shipped and compared, paired on the test set, with the shipped checkpoint
#   3. the kernel benchmark at width 64
# What comes back in $OUT (the device tool's folder; ./gpu-out elsewhere), within the tool's limits
# (8 files, 16 MB each, 64 MB in all): session.log, resnet20-V.safetensors per variant, and
# logs.tgz (train-V.log, compare-V.json and the run's log.jsonl per variant, bench.txt).
# Variants: h128 (the recipe as is), h160 (the INR grown to hidden 160 first, Net2Net: 13.4 MB
# shipped; hidden 192 would be 18.7, over a file's 16 MB), emb (channel embeddings at 10x the
# learning rate: a learned vector per full-width channel; 11.3 MB).
# Knobs (environment): VARIANTS ("h128 h160 emb"), TRAIN_MINUTES (4), BATCH (512), LR (2e-3), SEED
# (31, then one more per variant), DEVICE (cuda), THREADS (4 per run), VAL_EVERY (1000), VAL_LIMIT
# (5000), DATA (data/fmnist), RUNS (runs), PY (python3), GPU_TESTS / BENCH (1; 0 skips),
# COMPARE_LIMIT (first N test images; empty: all).
# The step timeouts bound a default call to about 9 minutes: give the device call timeout_s 590.
set -uo pipefail  # not -e: a failed step is logged and the later ones still run
cd "$(dirname "$0")/../.."

OUT=${OUT:-gpu-out}
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
VARIANTS=${VARIANTS:-h128 h160 emb}
TRAIN_MINUTES=${TRAIN_MINUTES:-4}
BATCH=${BATCH:-512}
LR=${LR:-2e-3}
SEED=${SEED:-31}
THREADS=${THREADS:-4}
VAL_EVERY=${VAL_EVERY:-1000}
VAL_LIMIT=${VAL_LIMIT:-5000}
DATA=${DATA:-data/fmnist}
RUNS=${RUNS:-runs}
SHIPPED=service/checkpoints/resnet20-fmnist-all.safetensors
TEACHER=$RUNS/teacher-last-w64.safetensors
mkdir -p "$OUT" "$RUNS"
exec > >(tee -a "$OUT/session.log") 2>&1
export PYTHONUNBUFFERED=1

variant_args() {  # the flags a variant adds to the recipe
  case $1 in
    h128) echo "--hidden 128" ;;
    h160) echo "--hidden 160" ;;
    emb) echo "--hidden 128 --channel-embeddings --embed-lr-scale 10" ;;
    *) echo "unknown variant '$1' (h128, h160, emb)" >&2; return 1 ;;
  esac
}
for v in $VARIANTS; do variant_args "$v" > /dev/null || exit 2; done
LOGS=$OUT/logs  # packed into logs.tgz on exit: one file back instead of three per variant
pack_logs() { tar -czf "$OUT/logs.tgz" -C "$OUT" logs && rm -rf "$LOGS"; }
mkdir -p "$LOGS" && trap pack_logs EXIT

if ! $PY -c "import pydantic_settings, fast_tsp, uvicorn" 2> /dev/null; then  # the image lacks them (prepare.sh)
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed: run deploy/gpu/prepare.sh and carry .whl"; exit 1; }
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
[[ -f $DATA/t10k-labels-idx1-ubyte.gz ]] || { echo "no $DATA: run deploy/gpu/prepare.sh and carry it"; exit 2; }

step() { echo; echo "== $(date -u +%T) $*"; }
neumeta() { $PY -m service.cli "$@"; }

step "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
$PY -c "import sys, torch; print(sys.version.split()[0], 'torch', torch.__version__,
        'cuda', torch.cuda.is_available() and torch.cuda.get_device_name(0))"
git log -1 --format='commit %h %s' 2>/dev/null | cut -c1-120

if [[ ${GPU_TESTS:-1} == 1 ]]; then
  # With CUDA present every kernel test runs the compiled kernel (channel heads and embeddings too),
  # not the interpreter; the slow one (a Hopper compile report) is left for a session with time.
  step "kernel and CUDA tests: tests/kernels compiled, CUDA training"
  timeout 150 $PY -m pytest -m "not slow" -q -p no:cacheprovider tests/kernels tests/training/test_device.py 2>&1 \
    | tail -25
  echo "pytest exit ${PIPESTATUS[0]}"
fi

step "teacher: resnet20-last at width 64"
neumeta generate --arch resnet20-last --width 64 --format safetensors --backend torch -o "$TEACHER" || exit 1

train() {  # variant seed: continue the shipped INR, then ship its best EMA weights and compare them
  local v=$1 seed=$2 run=$RUNS/gpu-hn-all-$1
  rm -rf "$run"
  # shellcheck disable=SC2046  # variant_args is a list of flags
  neumeta train hypernet --base "$TEACHER" --scope all --init-from "$SHIPPED" $(variant_args "$v") \
    --head-per-block --widths-train 8 64 --width-sampling sandwich --train-fixed --fixed-lr-scale 0.3 \
    --lambda-rec 0 --lambda-kd 1 --warm-steps 0 --steps 1000000 --val-every "$VAL_EVERY" --val-limit "$VAL_LIMIT" \
    --ckpt-every "$VAL_EVERY" --no-progress --noise 0 --ema-decay 0.998 --band-limit 0.2887 \
    --weight-decay 0 --lr "$LR" --batch "$BATCH" --seed "$seed" --threads "$THREADS" --device "$DEVICE" \
    --data "$DATA" --max-minutes "$TRAIN_MINUTES" --out "$run" > "$LOGS/train-$v.log" 2>&1 || return 1
  neumeta train ship "$run" --base "$TEACHER" --samples 1 --threads "$THREADS" \
    -o "$OUT/resnet20-$v.safetensors" >> "$LOGS/train-$v.log" 2>&1 || return 1
  neumeta compare "$OUT/resnet20-$v.safetensors" "$SHIPPED" --data "$DATA" --device "$DEVICE" \
    --threads "$THREADS" ${COMPARE_LIMIT:+--limit "$COMPARE_LIMIT"} --out "$LOGS/compare-$v.json" \
    >> "$LOGS/train-$v.log" 2>&1
  local status=$?
  cp "$run/log.jsonl" "$LOGS/history-$v.jsonl" 2> /dev/null
  return $status
}

step "train: $VARIANTS side by side, $TRAIN_MINUTES min each (batch $BATCH, lr $LR, seeds from $SEED)"
pids=() seed=$SEED
for v in $VARIANTS; do train "$v" "$seed" & pids+=($!); seed=$((seed + 1)); done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
for v in $VARIANTS; do echo "-- $v"; tail -12 "$LOGS/train-$v.log"; done
echo "train exit $status"

if [[ ${BENCH:-1} == 1 ]]; then
  step "kernel benchmark, width 64"
  timeout 75 $PY -m kernels.bench --device "$DEVICE" --width 64 --inr shipped,banded,embedded --methods triton,eager \
    > "$LOGS/bench.txt" 2>&1
  echo "bench exit $?"; tail -25 "$LOGS/bench.txt"
fi
step "done"
