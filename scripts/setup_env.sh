#!/usr/bin/env bash
# Creates or refreshes .venv with the pinned dependencies and both packages installed editable.
# Idempotent: when the requirement files and package metadata are unchanged it only checks and exits.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
INPUTS=(requirements/*.txt scripts/setup_gpu.sh ros2_ws/src/pose_regressor/setup.py ros2_ws/src/pose_regressor/setup.cfg training/pyproject.toml scripts/setup_env.sh scripts/build_tf2_msgs.sh)
wanted=$(cat "${INPUTS[@]}" | sha256sum | cut -d' ' -f1)
stamp="$VENV/.setup-stamp"

if [[ -x "$VENV/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]]; then
  echo "setup: $VENV is up to date"
  exit 0
fi

start=$(date +%s)
if [[ ! -x "$VENV/bin/python" ]]; then
  echo "setup: creating $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi
pip=("$VENV/bin/python" -m pip --disable-pip-version-check)
quiet_pip() {
  # This machine's pip.conf names optional local indexes that may be absent; their warnings are noise.
  "${pip[@]}" "$@" 2> >(grep -v "WARNING: Location" >&2 || true)
}
quiet_pip install --quiet "pip==26.3"
echo "setup: installing pinned dependencies (first run takes a few minutes: torch, ROS 2 wheels)"
quiet_pip install --quiet -c requirements/constraints.txt \
  -r requirements/robot.txt -r requirements/training.txt -r requirements/dev.txt
echo "setup: installing pose_regressor and pose_regressor_training (editable)"
quiet_pip install --quiet --no-deps --no-build-isolation \
  -e ros2_ws/src/pose_regressor -e training
"${pip[@]}" check >/dev/null || { "${pip[@]}" check; exit 1; }
# tf2_msgs (for /tf) is not on PyPI: build it from its interface with the rosidl wheels in dev.txt.
VENV="$VENV" bash scripts/build_tf2_msgs.sh
# `make setup-gpu` was run here before: the reinstall above brought back onnxruntime; swap it again.
if [[ -f "$VENV/.setup-gpu" ]]; then VENV="$VENV" bash scripts/setup_gpu.sh; fi
echo "$wanted" > "$stamp"
echo "setup: done in $(( $(date +%s) - start )) s"
