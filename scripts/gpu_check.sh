#!/usr/bin/env bash
# One-shot GPU acceptance run (issue 13): after `make setup` and, on a GPU machine, `make setup-gpu`.
# Without a GPU only the CPU part runs and the report says which GPU steps were skipped and why.
#   scripts/gpu_check.sh [--out DIR] [--quick]     (details: scripts/gpu_check.py --help)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
# onnxruntime-gpu finds the CUDA 13 / cuDNN libraries of the venv's nvidia-* wheels on the loader path.
nvidia_libs=$(find "$VENV"/lib/python3*/site-packages/nvidia -maxdepth 3 -type d -name lib 2>/dev/null | paste -sd: || true)
export LD_LIBRARY_PATH="${nvidia_libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exec "$VENV/bin/python" scripts/gpu_check.py "$@"
