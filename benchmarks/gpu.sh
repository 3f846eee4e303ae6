#!/usr/bin/env bash
# One script for a session with a GPU (< 5 minutes): the GPU tests, the scan benchmark on
# CUDA, and the training-throughput benchmark when it exists. Run from the repository root:
#
#     OUT=/some/dir bash benchmarks/gpu.sh
#
# The GPU machine has python3 + torch + triton + pytest but not our package or its server
# dependencies, so everything runs from the source tree with PYTHONPATH=$PWD. Every stage
# runs under its own time limit and the next one starts whatever the last one returned;
# the summary at the end lists each stage's exit status. Outputs go to ${OUT:-/tmp/gpu-out}/.
set -u

OUT="${OUT:-/tmp/gpu-out}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
STATUS=()

stage() {  # stage NAME SECONDS COMMAND...: run, tee to $OUT/NAME.txt, record the status
    local name="$1" limit="$2"
    shift 2
    echo
    echo "==================== $name (limit ${limit}s) ===================="
    echo "\$ $*"
    local start=$SECONDS
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$OUT/$name.txt"
    local rc=${PIPESTATUS[0]}
    echo "---- $name: exit $rc after $((SECONDS - start))s"
    STATUS+=("$name: exit $rc ($((SECONDS - start))s)")
}

stage environment 60 bash -c "nvidia-smi; $PY -c 'import sys, torch, triton; \
print(sys.version); print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, \
torch.cuda.get_device_name()); print(\"triton\", triton.__version__)'"

stage pytest-gpu 150 "$PY" -m pytest -m gpu tests/kernels tests/trainer -q -p no:cacheprovider \
    --timeout=140 --durations=10

stage scan-cuda-fp32 60 "$PY" benchmarks/scan.py --device cuda --reps 10
stage scan-cuda-bf16 40 "$PY" benchmarks/scan.py --device cuda --reps 10 --dtype bfloat16 \
    --impls torch triton

if [ -f benchmarks/train_throughput.py ]; then
    stage train-throughput 60 "$PY" benchmarks/train_throughput.py --device cuda --quick
else
    STATUS+=("train-throughput: skipped (benchmarks/train_throughput.py not present)")
fi

echo
echo "==================== summary (outputs in $OUT) ===================="
printf '%s\n' "${STATUS[@]}" | tee "$OUT/summary.txt"
