#!/usr/bin/env bash
# The checks that need a GPU, in one call on a lent CUDA machine: the whole test suite with a
# GPU visible (the CUDA tests run, and TrainConfig's device "auto" trains there), the sweep
# benchmark on the GPU (twice), and the README's demo. Logs go to $OUT (or the folder given),
# their tails to stdout.
#
#   bash scripts/device_check.sh [LOGDIR]
#
# Packages that machine lacks (mnist1d, optuna and its needs) can sit as wheels in .whl/.
set -u
out=${1:-${OUT:-/tmp/droplab-device}}
mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.cuda.is_available())'

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to $out/NAME.log, print its tail
    local name=$1 limit=$2 t0=$SECONDS rc
    shift 2
    timeout "$limit" "$@" >"$out/$name.log" 2>&1
    rc=$?
    echo "== $name: rc $rc, $((SECONDS - t0)) s"
    tail -n "${TAIL:-12}" "$out/$name.log"
}

# The whole suite holds the CUDA tests (`-k cuda` picks them alone); TrainConfig's "auto"
# sends every other training test to the GPU as well.
TAIL=25 step suite 150 python3 -m pytest -q -p no:cacheprovider -n 8 --ignore=tests/sweep/test_ray.py tests
TAIL=30 step sweep_throughput 100 python3 benchmarks/sweep_throughput.py --device cuda
TAIL=3 step sweep_throughput_again 70 python3 benchmarks/sweep_throughput.py --device cuda --skip-optuna
step demo 120 python3 -m droplab demo --out /tmp/droplab-demo
cp /tmp/droplab-demo/report.html "$out/demo_report.html" 2>/dev/null
