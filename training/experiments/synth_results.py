"""The synthetic-scene results tables of docs/results.md: fusion, losses and track augmentation compared.

    python training/experiments/synth_results.py --data DATA_DIR --out runs/synth_results [--epochs N]

DATA_DIR is a `pose-train synth` quad-rig dataset (docs/results.md: `pose-train synth --out DATA_DIR
--frames 10000 --frames-per-trajectory 20 --width 128 --height 96`).
Every run starts from training/configs/synth_quad.yaml and changes one thing; each is evaluated
on the held-out test trajectories with MC dropout. Prints a markdown table and writes
results.json and results.md into --out. Each run is a run_folder.py folder: finished runs are not
retrained, interrupted ones resume. The loss study is ablation.py.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from run_folder import ensure_run

# name -> (what it shows, overrides on top of synth_quad.yaml)
RUNS: dict[str, tuple[str, list[str]]] = {
    "quad_input": ("quad, input fusion, rot6d, homoscedastic, track aug + track TTA (default)", []),
    "quad_quaternion": ("quad, quaternion output (the earlier default)", ["model.rotation=quaternion"]),
    "quad_no_tta": ("quad, without track TTA", ["model.track_tta=false"]),
    "mono": (
        "mono (front camera only)",
        ["data.cameras=[front]", "augment.track=false", "model.track_tta=false"],
    ),
    "quad_late": ("quad, late fusion (shared backbone per camera)", ["model.fusion=late"]),
    # Without the augmentation the model is not trained to be shift-equivariant: no TTA either.
    "quad_no_track": ("quad, no track augmentation", ["augment.track=false", "model.track_tta=false"]),
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=0, help="override optim.epochs (0: the config's)")
    parser.add_argument("--max-frames", type=int, default=0, help="training frames per run (0: all)")
    parser.add_argument("--only", nargs="*", default=None, help="run only these names")
    parser.add_argument("--mc-samples", type=int, default=32)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    for name, (label, overrides) in RUNS.items():
        if args.only is not None and name not in args.only:
            continue
        extra = [f"data.root={args.data}", "tensorboard=false"]
        if args.epochs:
            extra.append(f"optim.epochs={args.epochs}")
        if args.max_frames:
            extra.append(f"data.max_frames={args.max_frames}")
        print(f"== {name}: {label}", flush=True)
        run = ensure_run(args.out / name, [*overrides, *extra], args.mc_samples)[0]
        results[name] = {"label": label, **run.test, "train_minutes": run.train_minutes}
    header = (
        "| run | median t (m) | median rot (deg) | mean t (m) | within 0.25 m, 2 deg | NEES (calibrated) |"
    )
    rows = [
        header + " train min |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in results.values():
        nees = m.get("uncertainty", {}).get("mean_nees_after", float("nan"))
        rows.append(
            f"| {m['label']} | {m['median_translation_m']:.3f} | {m['median_rotation_deg']:.2f} | "
            f"{m['mean_translation_m']:.3f} | {m['pct_within_0.25m_2deg']:.1f}% | {nees:.2f} | "
            f"{m.get('train_minutes', float('nan')):.1f} |"
        )
    table = "\n".join(rows)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "results.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
