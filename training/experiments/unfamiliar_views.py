"""Unfamiliar views: does the predicted std rise, and does the node's uncertain flag catch the gross errors?

    python training/experiments/unfamiliar_views.py --checkpoint RUN/best.pt --out DIR [--frames N]

Renders one small test-only dataset per `pose-train synth --condition` (the same trajectories and seed
for all, so the condition is the only difference), in the rig, scene and photometric settings of the
checkpoint's training data; when that data was rendered with `--exclude-region`, also a test set
inside the region. Each is evaluated with MC dropout (`evaluate_checkpoint`). The stds are compared
on one calibration: the covariance scale fitted on the training data's val split, as a bundle
exported from the checkpoint would carry. In-distribution frames are the nominal set's frames
outside the excluded region (all of them without one).

Per condition: median position and rotation std against the in-distribution frames, AUROC of each
std as a detector of the condition's frames against the in-distribution ones, median errors, and
the share of gross errors (position or rotation error above 3x its in-distribution median) that the
node's flag (position std > max_position_std or rotation std > max_rotation_std) would catch; the
thresholds default to those `pose-train eval-checkpoint` suggests from the val split, which an
exported bundle carries and the node flags by (`--thresholds p95`: the in-distribution 95th
percentiles, what this script used before 2026-12-05); and the share of truths inside the 95%
ellipsoid of the calibrated position and rotation blocks (whether the covariance stays honest
there, not only larger). Writes results.json, results.md and
preview.png (the first camera set of every condition) into --out; rendered sets are kept in
--out/data and reused when run again.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray
from scipy.stats import chi2

from pose_regressor.metrics import covariance_stds, nees_values, tangent_residuals
from pose_regressor.uncertainty import CovarianceScale
from pose_regressor_training.checkpoint import load_checkpoint
from pose_regressor_training.data.folder import image_path, read_frames, read_metadata, read_rig
from pose_regressor_training.ensemble import ENSEMBLE_COVARIANCE_CHOICES
from pose_regressor_training.evaluate import Evaluation, evaluate_checkpoint
from pose_regressor_training.ood import auroc, share_caught, uncertain_flags
from pose_regressor_training.synth.conditions import CONDITIONS, Condition, Region
from pose_regressor_training.synth.generate import SynthConfig, render_dataset
from pose_regressor_training.synth.scene import SceneConfig

GROSS_FACTOR = 3.0  # a gross error: above this many times the in-distribution median error
REGION_CONDITION = "excluded_region"
THRESHOLD_SOURCES = ("suggested", "p95")


@dataclass
class Scored:
    """One condition's evaluated frames, on the reference calibration."""

    position_std: NDArray[np.float64]  # m
    rotation_std: NDArray[np.float64]  # deg
    translation_error: NDArray[np.float64]  # m
    rotation_error: NDArray[np.float64]  # deg
    positions: NDArray[np.float64]  # ground truth (N, 3)
    # whether each truth lies inside the 95% ellipsoid of the calibrated position / rotation block
    inside_95_position: NDArray[np.bool_]
    inside_95_rotation: NDArray[np.bool_]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--frames", type=int, default=100, help="frames per condition")
    parser.add_argument(
        "--seed", type=int, default=1, help="trajectory seed of the test sets (not the training one)"
    )
    parser.add_argument("--mc-samples", type=int, default=32)
    parser.add_argument(
        "--ensemble",
        type=Path,
        nargs="+",
        default=[],
        metavar="CHECKPOINT",
        help="more checkpoints of the same model: score the deep ensemble of --checkpoint and these",
    )
    parser.add_argument(
        "--ensemble-covariance",
        choices=ENSEMBLE_COVARIANCE_CHOICES,
        default="auto",
        help="the ensemble's covariance (as pose-train eval-checkpoint --ensemble-covariance)",
    )
    parser.add_argument(
        "--covered-camera", default="", help="camera_covered's camera (default: the rig's first)"
    )
    parser.add_argument("--max-position-std", type=float, help="flag threshold, m (default: --thresholds)")
    parser.add_argument("--max-rotation-std", type=float, help="flag threshold, deg (default: --thresholds)")
    parser.add_argument(
        "--thresholds",
        choices=THRESHOLD_SOURCES,
        default="suggested",
        help="flag thresholds not given: suggested, what eval-checkpoint suggests from the val split (the "
        "bundle carries them and the node flags by them); p95, the in-distribution 95th percentiles",
    )
    parser.add_argument("--workers", type=int, default=0, help="render processes (0: one per CPU core)")
    parser.add_argument(
        "--conditions",
        nargs="+",
        choices=[*CONDITIONS, REGION_CONDITION],
        default=[*CONDITIONS, REGION_CONDITION],
        help="which to score (nominal always; excluded_region only for data rendered with --exclude-region)",
    )
    args = parser.parse_args(argv)
    if args.frames < 3 or args.mc_samples < 2:
        print("unfamiliar_views: --frames must be >= 3 and --mc-samples >= 2", file=sys.stderr)
        return 2

    trained = load_checkpoint(args.checkpoint)
    train_root = Path(trained.dataset.root)
    provenance = read_metadata(train_root).get("provenance") or {}
    if provenance.get("generator") != "pose-train synth":
        print(f"unfamiliar_views: {train_root} was not rendered by pose-train synth", file=sys.stderr)
        return 2
    excluded = Region.parse(provenance["exclude_region"]) if provenance.get("exclude_region") else None
    rig = read_rig(train_root)
    covered = args.covered_camera or rig.names[0]

    wanted = [name for name in CONDITIONS if name == "nominal" or name in args.conditions]
    sets = {name: _render(args, train_root, provenance, Condition(name, covered), None) for name in wanted}
    if excluded is not None and REGION_CONDITION in args.conditions:
        sets[REGION_CONDITION] = _render(args, train_root, provenance, Condition(), excluded)

    # The bundle's calibration and flag thresholds: the covariance scale and the thresholds fitted
    # on the training data's val split.
    ensemble = {"ensemble": args.ensemble, "ensemble_covariance": args.ensemble_covariance}
    val = evaluate_checkpoint(args.checkpoint, split="val", mc_samples=args.mc_samples, **ensemble).metrics
    reference_scale = CovarianceScale.from_json(val["covariance_scale"])
    suggested = val["uncertainty"]["uncertain_flag"]["suggested_parameters"]
    scored = {
        name: _scored(
            evaluate_checkpoint(
                args.checkpoint,
                data_root=root,
                mc_samples=args.mc_samples,
                calibration_split=None,
                covariance_scale=reference_scale,
                **ensemble,
            )
        )
        for name, root in sets.items()
    }
    nominal = scored["nominal"]
    in_dist = (
        ~excluded.contains(nominal.positions)
        if excluded is not None
        else np.ones(len(nominal.positions), bool)
    )
    reference = _subset(nominal, in_dist)
    thresholds = _thresholds(args, reference, suggested)
    gross_limits = (
        GROSS_FACTOR * float(np.median(reference.translation_error)),
        GROSS_FACTOR * float(np.median(reference.rotation_error)),
    )
    rows = {name: _row(reference, s, thresholds, gross_limits) for name, s in scored.items()}
    results: dict[str, Any] = {
        "checkpoint": str(args.checkpoint),
        **(
            {"ensemble": [str(p) for p in args.ensemble], "ensemble_covariance": val["ensemble_covariance"]}
            if args.ensemble
            else {}
        ),
        "training_data": str(train_root),
        "frames_per_condition": args.frames,
        "seed": args.seed,
        "mc_samples": int(val["mc_samples"]),  # an ensemble's: a multiple of its members, or K for heads
        "covariance_scale": reference_scale.as_mapping(),
        "covered_camera": covered,
        "excluded_region": str(excluded) if excluded is not None else None,
        # trained with `synth --movable-box`: box_moved is then a new place of a box seen moving
        "movable_box_trajectories": int(
            (provenance.get("movable_box") or {}).get("moved_train_trajectories", 0)
        ),
        "in_distribution_frames": int(in_dist.sum()),
        "thresholds": thresholds,
        "gross_error_limits": {"translation_m": gross_limits[0], "rotation_deg": gross_limits[1]},
        "conditions": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    table = markdown_table(results)
    (args.out / "results.md").write_text(table)
    _write_preview(args.out / "preview.png", sets)
    print(table, end="")
    return 0


def _thresholds(args: argparse.Namespace, reference: Scored, suggested: dict[str, float]) -> dict[str, Any]:
    """The flag's thresholds (m, deg) and where they come from: each given one, else `--thresholds`."""
    if args.thresholds == "suggested":
        position = float(suggested["max_position_std"])
        rotation = math.degrees(float(suggested["max_rotation_std"]))
        derived = "eval's suggestion from val"
    else:
        position = float(np.percentile(reference.position_std, 95))
        rotation = float(np.percentile(reference.rotation_std, 95))
        derived = "in-distribution p95"
    given = [args.max_position_std is not None, args.max_rotation_std is not None]
    return {
        "max_position_std_m": args.max_position_std if given[0] else position,
        "max_rotation_std_deg": args.max_rotation_std if given[1] else rotation,
        "source": "given" if all(given) else derived if not any(given) else f"given and {derived}",
    }


def _render(
    args: argparse.Namespace,
    train_root: Path,
    provenance: dict[str, Any],
    condition: Condition,
    inside: Region | None,
) -> Path:
    """A test-only set like the training data's, under `condition` (or inside the excluded region)."""
    name = REGION_CONDITION if inside is not None else condition.name
    out: Path = args.out / "data" / name
    if (out / "dataset.yaml").is_file():
        return out
    meta = read_metadata(train_root)
    render_dataset(
        SynthConfig(
            out=out,
            rig=read_rig(train_root),
            trajectory=str(provenance.get("trajectory", "drone")),
            frames=args.frames,
            fps=float(meta.get("fps", 10.0)),
            frames_per_trajectory=int(provenance.get("frames_per_trajectory", 20)),
            seed=args.seed,
            scene=SceneConfig(seed=int(provenance.get("scene_seed", 0))),
            lighting_strength=float(provenance.get("lighting_strength", 1.0)),
            noise_std=float(provenance.get("noise_std", 0.0)),
            workers=args.workers,
            overwrite=True,
            progress=False,
            condition=condition,
            inside_region=inside,
            only_split="test",
        )
    )
    return out


def _scored(evaluation: Evaluation) -> Scored:
    """The evaluation's node stds and ellipsoids (under the val split's calibration, which it was
    given)."""
    covs = np.stack([e.covariance for e in evaluation.estimates])
    pos_std, rot_std = covariance_stds(covs)
    residuals = tangent_residuals(
        evaluation.t_gt,
        evaluation.q_gt,
        np.stack([e.translation for e in evaluation.estimates]),
        np.stack([e.quat_xyzw for e in evaluation.estimates]),
    )
    limit = float(chi2.ppf(0.95, 3))
    return Scored(
        pos_std,
        rot_std,
        evaluation.translation_errors,
        evaluation.rotation_errors,
        evaluation.t_gt,
        nees_values(residuals[:, :3], covs[:, :3, :3]) < limit,
        nees_values(residuals[:, 3:], covs[:, 3:, 3:]) < limit,
    )


def _subset(s: Scored, mask: NDArray[np.bool_]) -> Scored:
    return Scored(
        s.position_std[mask],
        s.rotation_std[mask],
        s.translation_error[mask],
        s.rotation_error[mask],
        s.positions[mask],
        s.inside_95_position[mask],
        s.inside_95_rotation[mask],
    )


def _row(
    reference: Scored, s: Scored, thresholds: dict[str, Any], gross_limits: tuple[float, float]
) -> dict[str, Any]:
    flags = uncertain_flags(
        s.position_std, s.rotation_std, thresholds["max_position_std_m"], thresholds["max_rotation_std_deg"]
    )
    gross = (s.translation_error > gross_limits[0]) | (s.rotation_error > gross_limits[1])
    return {
        "frames": len(s.position_std),
        "median_position_std_m": float(np.median(s.position_std)),
        "median_rotation_std_deg": float(np.median(s.rotation_std)),
        "position_std_ratio": float(np.median(s.position_std) / np.median(reference.position_std)),
        "rotation_std_ratio": float(np.median(s.rotation_std) / np.median(reference.rotation_std)),
        "auroc_position_std": auroc(reference.position_std, s.position_std),
        "auroc_rotation_std": auroc(reference.rotation_std, s.rotation_std),
        "median_translation_m": float(np.median(s.translation_error)),
        "median_rotation_deg": float(np.median(s.rotation_error)),
        "flagged_share": float(flags.mean()),
        "gross_errors": int(gross.sum()),
        "gross_caught_share": share_caught(flags, gross),
        # is the covariance still honest there: truths inside the 95% ellipsoid (ideal 0.95)
        "inside_95_position": float(s.inside_95_position.mean()),
        "inside_95_rotation": float(s.inside_95_rotation.mean()),
    }


def markdown_table(results: dict[str, Any]) -> str:
    t, gross = results["thresholds"], results["gross_error_limits"]
    lines = [
        f"Checkpoint `{results['checkpoint']}`"
        + (
            f" with {len(results['ensemble'])} more as an ensemble ({results['ensemble_covariance']})"
            if "ensemble" in results
            else ""
        )
        + f", {results['frames_per_condition']} frames per condition "
        f"(seed {results['seed']}, {results['mc_samples']} MC samples); in-distribution: "
        f"{results['in_distribution_frames']} nominal frames"
        + (f" outside {results['excluded_region']}" if results["excluded_region"] else "")
        + f". Flag: position std > {t['max_position_std_m']:.3f} m or rotation std > "
        f"{t['max_rotation_std_deg']:.2f} deg ({t['source']}); gross error: > "
        f"{gross['translation_m']:.2f} m or > {gross['rotation_deg']:.1f} deg "
        f"({GROSS_FACTOR:g}x the in-distribution median)."
        + (
            f" Trained with the movable box elsewhere in {results['movable_box_trajectories']} train "
            "trajectories (never at box_moved's place)."
            if results.get("movable_box_trajectories")
            else ""
        ),
        "",
        "| condition | frames | pos std ratio | rot std ratio | AUROC pos std | AUROC rot std "
        "| median error | flagged | gross errors | gross caught | inside 95%: pos / rot |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results["conditions"].items():
        caught = "n/a" if math.isnan(r["gross_caught_share"]) else f"{100 * r['gross_caught_share']:.0f}%"
        lines.append(
            f"| {name} | {r['frames']} | {r['position_std_ratio']:.2f} | {r['rotation_std_ratio']:.2f} "
            f"| {r['auroc_position_std']:.2f} | {r['auroc_rotation_std']:.2f} "
            f"| {r['median_translation_m']:.2f} m, {r['median_rotation_deg']:.1f} deg "
            f"| {100 * r['flagged_share']:.0f}% | {r['gross_errors']} | {caught} "
            f"| {100 * r['inside_95_position']:.0f}% / {100 * r['inside_95_rotation']:.0f}% |"
        )
    return "\n".join(lines) + "\n"


def _write_preview(path: Path, sets: dict[str, Path]) -> None:
    """One row per condition: the cameras of its first frame side by side."""
    rows = []
    for name, root in sets.items():
        first = read_frames(root)[0].index
        views: list[NDArray[np.uint8]] = []
        for cam in read_rig(root).names:
            path_of_view = image_path(root, cam, first)
            view = cv2.imread(str(path_of_view))
            if view is None:
                raise SystemExit(f"unfamiliar_views: cannot read the image {path_of_view}")
            views.append(view.astype(np.uint8, copy=False))  # imread's 8-bit BGR, typed as such
        row = np.concatenate(views, axis=1)
        cv2.putText(row, name, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 255, 255), 1, cv2.LINE_AA)
        rows.append(row)
    cv2.imwrite(str(path), np.concatenate(rows, axis=0))


if __name__ == "__main__":
    sys.exit(main())
