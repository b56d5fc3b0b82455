"""`pose-train eval-checkpoint`: accuracy and uncertainty metrics of a checkpoint on a dataset split,
with plots."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.stats import chi2, spearmanr

from pose_regressor.metrics import (
    covariance_stds,
    error_summary,
    nees_values,
    pose_errors,
    tangent_residuals,
)
from pose_regressor.uncertainty import PoseEstimate, estimate_from_samples
from pose_regressor_training.checkpoint import load_checkpoint, model_from_checkpoint
from pose_regressor_training.data.dataset import PoseDataset, describe_skipped
from pose_regressor_training.data.sources import load_dataset
from pose_regressor_training.predict import predict, resolve_device


@dataclass
class Evaluation:
    metrics: dict[str, Any]
    t_gt: NDArray[np.float64]
    q_gt: NDArray[np.float64]
    estimates: list[PoseEstimate]
    sequences: NDArray[np.int64]
    translation_errors: NDArray[np.float64]
    rotation_errors: NDArray[np.float64]
    skipped: list[str] = field(default_factory=list)  # one line per split that lost frames (skip_bad)


def evaluation_dir(checkpoint: Path, split: str) -> Path:
    """Where `pose-train eval-checkpoint` writes the metrics and plots of `checkpoint` on `split`."""
    return checkpoint.parent / f"eval_{split}"


def fit_covariance_scale(residuals: NDArray[np.float64], covariances: NDArray[np.float64]) -> float:
    """The scale s that makes the *median* NEES of (residual, s * covariance) equal the median of a
    chi-square distribution with 6 degrees of freedom (what consistent Gaussian errors give).

    NEES is linear in 1 / s, so s = median NEES / chi2_6 median exactly. The median, not the mean,
    is matched because a few gross errors with small predicted spread (a view mistaken for another
    place) would otherwise inflate every covariance; the mean NEES after calibration is reported too.
    """
    return float(np.median(nees_values(residuals, covariances)) / chi2.median(residuals.shape[1]))


def _mc_estimates(
    t_samples: NDArray[np.float64], q_samples: NDArray[np.float64], scale: float
) -> list[PoseEstimate]:
    return [estimate_from_samples(t, q, scale) for t, q in zip(t_samples, q_samples, strict=True)]


def evaluate_checkpoint(
    checkpoint: Path,
    data_root: Path | None = None,
    split: str = "test",
    mc_samples: int = 32,
    calibration_split: str | None = "val",
    device_name: str = "auto",
    seed: int = 0,
    skip_bad: bool = False,
) -> Evaluation:
    """Metrics of `checkpoint` on `split`; with `skip_bad`, frames whose images cannot be read are
    left out (counted in metrics["skipped_frames"]) instead of stopping with `ImageLoadError`."""
    trained = load_checkpoint(checkpoint)
    model = model_from_checkpoint(trained)
    device = resolve_device(device_name)
    model.to(device)
    root = data_root if data_root is not None else Path(trained.dataset.root)
    data = trained.config.data
    size = (model.config.image_width, model.config.image_height)
    skipped: dict[str, int] = {}
    notes: list[str] = []

    def run(split_name: str) -> tuple[PoseDataset, NDArray[np.float64], NDArray[np.float64]]:
        frames = load_dataset(trained.dataset.kind, root, split_name, **data.options)
        frames = frames.select_cameras(data.cameras)
        if len(frames) == 0:
            raise ValueError(f"split {split_name!r} of {root} has no frames")
        if frames.rig.names != trained.rig.names:
            raise ValueError(
                f"{root} has cameras {frames.rig.names}, the model was trained on {trained.rig.names}"
            )
        dataset = PoseDataset(frames, size, preload=False, skip_bad=skip_bad)
        if dataset.skipped:
            skipped[split_name] = len(dataset.skipped)
            notes.append(describe_skipped(dataset.skipped, len(frames), split_name))
        if len(dataset) == 0:
            raise ValueError(f"none of the {len(frames)} frames of split {split_name!r} has readable images")
        t_s, q_s = predict(model, dataset, device, mc_samples=max(mc_samples, 0), seed=seed)
        return dataset, t_s, q_s

    dataset, t_samples, q_samples = run(split)
    frames = dataset.frame_list.frames
    t_gt = np.stack([f.translation for f in frames])
    q_gt = np.stack([f.quat_xyzw for f in frames])
    sequences = np.array([f.sequence for f in frames])
    raw = _mc_estimates(t_samples, q_samples, 1.0)
    t_mean = np.stack([e.translation for e in raw])
    q_mean = np.stack([e.quat_xyzw for e in raw])
    t_err, r_err = pose_errors(t_gt, q_gt, t_mean, q_mean)
    metrics: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "data": str(root),
        "split": split,
        "mc_samples": mc_samples,
        **error_summary(t_err, r_err),
        "skipped_frames": skipped,
    }
    per_sequence = {}
    for seq in np.unique(sequences):
        sel = sequences == seq
        per_sequence[str(int(seq))] = error_summary(t_err[sel], r_err[sel])
    metrics["per_sequence"] = per_sequence

    # Deterministic prediction (mask of ones), reported beside the MC mean.
    t_det, q_det = predict(model, dataset, device, mc_samples=0)
    metrics["deterministic"] = error_summary(*pose_errors(t_gt, q_gt, t_det[:, 0], q_det[:, 0]))

    estimates = raw
    if mc_samples >= 2:
        residuals = tangent_residuals(t_gt, q_gt, t_mean, q_mean)
        covs = np.stack([e.covariance for e in raw])
        pos_std, rot_std = covariance_stds(covs)
        calib_source = split
        calib_residuals, calib_covs = residuals, covs
        if calibration_split and calibration_split != split:
            try:
                cal_set, cal_t, cal_q = run(calibration_split)
            except ValueError:
                cal_set = None
            if cal_set is not None:
                cal_est = _mc_estimates(cal_t, cal_q, 1.0)
                cal_frames = cal_set.frame_list.frames
                calib_residuals = tangent_residuals(
                    np.stack([f.translation for f in cal_frames]),
                    np.stack([f.quat_xyzw for f in cal_frames]),
                    np.stack([e.translation for e in cal_est]),
                    np.stack([e.quat_xyzw for e in cal_est]),
                )
                calib_covs = np.stack([e.covariance for e in cal_est])
                calib_source = calibration_split
        scale = fit_covariance_scale(calib_residuals, calib_covs)
        nees_before = nees_values(residuals, covs)
        nees_after = nees_values(residuals, covs * scale)
        metrics["uncertainty"] = {
            "spearman_position_std_vs_error": float(spearmanr(pos_std, t_err).statistic),
            "spearman_rotation_std_vs_error": float(spearmanr(rot_std, r_err).statistic),
            "median_position_std_m": float(np.median(pos_std)),
            "median_rotation_std_deg": float(np.median(rot_std)),
            "mean_nees_before": float(np.mean(nees_before)),
            "mean_nees_after": float(np.mean(nees_after)),
            "median_nees_before": float(np.median(nees_before)),
            "median_nees_after": float(np.median(nees_after)),
            "nees_expected": 6.0,
            "median_nees_expected": float(chi2.median(6)),
            "covariance_scale": scale,
            "covariance_scale_fitted_on": calib_source,
        }
        metrics["covariance_scale"] = scale
        estimates = _mc_estimates(t_samples, q_samples, scale)
    return Evaluation(metrics, t_gt, q_gt, estimates, sequences, t_err, r_err, notes)


def write_evaluation(evaluation: Evaluation, out_dir: Path) -> list[Path]:
    """metrics.json and the plots; returns the written paths."""
    from pose_regressor.evaluate_plots import plot_trajectory
    from pose_regressor_training.plots import plot_error_cdf, plot_error_vs_std

    ev, m = evaluation, evaluation.metrics
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = out_dir / "metrics.json"
    metrics_path.write_text(json.dumps(m, indent=2) + "\n")
    paths = [metrics_path]
    t_pred = np.stack([e.translation for e in ev.estimates])
    covs = np.stack([e.covariance for e in ev.estimates]) if m.get("uncertainty") else None
    title = (
        f"{m['split']} split: median {m['median_translation_m']:.2f} m, {m['median_rotation_deg']:.1f} deg "
        f"({m['frames']} frames)"
    )
    paths.append(plot_trajectory(out_dir / "trajectory.png", ev.t_gt, t_pred, title, covs, ev.sequences))
    paths.append(
        plot_error_cdf(out_dir / "error_cdf.png", ev.translation_errors, ev.rotation_errors, m["split"])
    )
    if covs is not None:
        paths.append(
            plot_error_vs_std(
                out_dir / "error_vs_std.png",
                ev.translation_errors,
                ev.rotation_errors,
                covs,
                m["uncertainty"],
            )
        )
    return paths
