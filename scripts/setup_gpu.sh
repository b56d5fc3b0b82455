#!/usr/bin/env bash
# `make setup-gpu`: turns the .venv of `make setup` into one that runs the robot's engines on an
# NVIDIA GPU: onnxruntime (CPU) is swapped for onnxruntime-gpu, and TensorRT and NVIDIA's CUDA
# Python binding are added (requirements/gpu.txt). Needs an NVIDIA GPU and driver >= 580 (CUDA 13);
# never run by `make test` or CI. `make setup` after this keeps the GPU layer (marker file below).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
if [[ ! -x "$VENV/bin/python" ]]; then
  echo "setup-gpu: $VENV does not exist; run \`make setup\` first" >&2
  exit 1
fi
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "setup-gpu: no NVIDIA GPU and driver here (nvidia-smi is missing or fails); nothing changed" >&2
  exit 1
fi
pip=("$VENV/bin/python" -m pip --disable-pip-version-check)
start=$(date +%s)
# Both distributions own the `onnxruntime` module: remove both, then install the GPU one alone.
"${pip[@]}" uninstall --quiet --yes onnxruntime onnxruntime-gpu >/dev/null 2>&1 || true
echo "setup-gpu: installing requirements/gpu.txt (onnxruntime-gpu, TensorRT, cuda-bindings)"
"${pip[@]}" install --quiet -c requirements/constraints.txt -r requirements/gpu.txt \
  2> >(grep -v "WARNING: Location" >&2 || true)
"${pip[@]}" check >/dev/null || { "${pip[@]}" check; exit 1; }
touch "$VENV/.setup-gpu"
"$VENV/bin/python" - <<'PY'
import onnxruntime, tensorrt
from cuda.bindings import runtime

err, count = runtime.cudaGetDeviceCount()
print(f"setup-gpu: tensorrt {tensorrt.__version__}, onnxruntime {onnxruntime.__version__} "
      f"({', '.join(onnxruntime.get_available_providers())}), CUDA devices: {count} ({err.name})")
PY
echo "setup-gpu: done in $(( $(date +%s) - start )) s"
