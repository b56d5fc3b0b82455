#!/usr/bin/env bash
# The end-to-end demo: render the synthetic quad-rig scene (dataset folder + ROS 2 bag of the
# test trajectories), train the default input-fusion model briefly, and evaluate it on the
# held-out test trajectories with MC-dropout uncertainty. The later stages (export a bundle,
# run the localizer node on the bag over ROS 2, evaluate) are appended as they land.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${DEMO_OUT:-out/demo}
FRAMES=${DEMO_FRAMES:-1000}
EPOCHS=${DEMO_EPOCHS:-20}
mkdir -p "$OUT"
train=.venv/bin/pose-train

echo "== 1/4 render the synthetic scene (quad rig, $FRAMES frames, 160x120 per camera)"
$train synth --out "$OUT/synth_quad" --rig quad --trajectory drone --frames "$FRAMES" \
  --bag "$OUT/synth_quad_test.bag" --seed 0 --overwrite --quiet
.venv/bin/python scripts/summarize_dataset.py "$OUT/synth_quad" --bag "$OUT/synth_quad_test.bag" \
  --preview "$OUT/synth_quad_preview.png"

echo
echo "== 2/4 train the default quad-rig input-fusion model ($EPOCHS epochs; a short demo run)"
rm -rf "$OUT/run"
$train fit --config training/configs/synth_quad.yaml --out "$OUT/run" --quiet \
  "data.root=$OUT/synth_quad" "optim.epochs=$EPOCHS"

echo
echo "== 3/4 evaluate on the held-out test trajectories (32 MC-dropout samples per frame)"
$train eval --checkpoint "$OUT/run/best.pt" --split test --mc-samples 32 --out "$OUT/eval"

echo
echo "== 4/4 done: dataset $OUT/synth_quad, bag $OUT/synth_quad_test.bag, checkpoints $OUT/run,"
echo "   metrics and plots $OUT/eval (trajectory.png, error_cdf.png, error_vs_std.png)"
