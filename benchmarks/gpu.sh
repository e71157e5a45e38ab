#!/usr/bin/env bash
# GPU evidence in one go, under 10 minutes on one GPU: install, run the GPU tests, then measure the
# default search's trials/hour at --gpus-per-trial 1, 0.5 and 0.25, bf16 against fp32 epoch time, and
# GPU utilisation (benchmarks/gpu_trials.py). Run from anywhere on a machine with a CUDA GPU and PyTorch:
#
#     bash benchmarks/gpu.sh                      # data: $TCNVAE_SHARED_DATA or ../shared/data
#     TCNVAE_WHEELS=wheels/ bash benchmarks/gpu.sh   # no internet: install Ray, Optuna & co from wheels
#
# The installed CUDA build of torch is kept (our range, torch>=2.1,<3, accepts it). With TCNVAE_WHEELS
# the wheels go to a private folder on PYTHONPATH (no index, no dependencies resolved: bring them all)
# and the project runs from this checkout. Each step has its own time limit and the script goes on
# after a failed step, so one run gives every figure it can; the exit status is the number of failed steps.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
DATA="${TCNVAE_SHARED_DATA:-../shared/data}"
failed=0
step() {  # step NAME SECONDS COMMAND...: run COMMAND with a time limit, say how it went
    local name=$1 limit=$2; shift 2
    local start=$SECONDS
    echo "== $name (limit ${limit}s)"
    timeout --kill-after=10 "$limit" "$@"
    local rc=$?
    echo "== $name: exit $rc after $((SECONDS - start))s"
    [ "$rc" -eq 0 ] || failed=$((failed + 1))
}

if [ -n "${TCNVAE_WHEELS:-}" ]; then
    step install 180 python3 -m pip install -q --no-index --no-deps --no-compile --upgrade \
        --target "${TMPDIR:-/tmp}/tcnvae-site" "$TCNVAE_WHEELS"/*.whl
    export PYTHONPATH="${TMPDIR:-/tmp}/tcnvae-site:$PWD/platform:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
    step install 180 python3 -m pip install -q -e ".[test]"
fi
step environment 60 python3 -c "import torch, ray, optuna, tcnvae
print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(), '| ray', ray.__version__, '| optuna', optuna.__version__)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

# The GPU tests, and the trainer and precision tests on a machine where CUDA is present.
step gpu_tests 120 python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_trainer_precision.py
step gpu_trials 420 python3 benchmarks/gpu_trials.py --data-path "hapt=$DATA/hapt_raw.npz" "$@"
echo "gpu.sh: failed_steps=$failed"
exit "$failed"
