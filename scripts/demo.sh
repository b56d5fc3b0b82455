#!/usr/bin/env bash
# The end-to-end demo. At this stage: render the synthetic quad-rig scene into a dataset folder
# and a ROS 2 bag, then summarize both. Later stages (train, export, run the node on the bag,
# evaluate) are appended here as they land.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${DEMO_OUT:-out/demo}
mkdir -p "$OUT"

echo "== 1/2 render the synthetic scene (quad rig, 1000 frames, 160x120 per camera)"
.venv/bin/pose-train synth --out "$OUT/synth_quad" --rig quad --trajectory drone --frames 1000 \
  --bag "$OUT/synth_quad_test.bag" --seed 0 --overwrite

echo
echo "== 2/2 summary"
.venv/bin/python scripts/summarize_dataset.py "$OUT/synth_quad" --bag "$OUT/synth_quad_test.bag" \
  --preview "$OUT/synth_quad_preview.png"
