#!/usr/bin/env bash
# A short end-to-end run of the paper preset at small size on one GPU (see benchmarks/gpu_check.py for what it
# runs and reports). Arguments go to it: --server vllm|transformers|hf, --model DIR, --python VENV_PYTHON, ...
# Writes benchmarks/results/gpu_check.json; the run itself lands in runs/gpu_check/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
if ! "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())" 2>/dev/null && [[ " $* " != *" --cpu "* ]]; then
    echo "gpu_check: no CUDA GPU for $PY (add --cpu --shape tiny for a dry run on a CPU)" >&2
    exit 2
fi
exec "$PY" benchmarks/gpu_check.py "$@"
