"""`pose-regressor eval-folder`: a bundle scored on one split of a dataset folder, without torch or ROS.

The frames are read with `pose_regressor.dataset_folder` (the one reader of the format), each camera
set goes through `Localizer` (the node's preprocessing, engine and MC-dropout estimate), and the
errors and uncertainty use `pose_regressor.metrics`, so the keys of metrics.json mean what they mean
for `pose-train eval-checkpoint` and `pose-regressor eval-node`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pose_regressor.bundle import ModelBundle
from pose_regressor.camera_info_check import check_camera_info, expected_cameras
from pose_regressor.dataset_folder import (
    FrameRecord,
    image_path,
    length_unit,
    read_metadata,
    read_rgb,
    rig_from_metadata,
    split_frames,
)
from pose_regressor.error_correlation import error_correlation
from pose_regressor.files import atomic_write_text, json_text
from pose_regressor.limits import MAX_FLAG_POSITION_STD, MAX_FLAG_ROTATION_STD
from pose_regressor.localizer import Localizer
from pose_regressor.metrics import (
    covariance_stds,
    error_summary,
    nees_values,
    pose_errors,
    tangent_residuals,
)
from pose_regressor.params import bundle_flag_thresholds
from pose_regressor.pipeline import flag_check_off
from pose_regressor.rig import Rig, mounting_difference
from pose_regressor.uncertainty import PoseEstimate
from pose_regressor.uncertainty_metrics import node_stds, published_uncertainty

# What a run writes; metrics.json last, so that it marks a complete evaluation.
RESULT_FILES = ("metrics.json", "poses.csv", "trajectory.png", "reliability.png")


class FolderEvaluationError(ValueError):
    """The bundle and the folder do not fit together (one line for the user)."""


@dataclass(frozen=True)
class FolderEvaluationConfig:
    bundle: Path
    data: Path
    out: Path
    split: str = "test"
    backend: str = "auto"
    mc_samples: int | None = None  # None: the bundle's; 0: the deterministic pose


@dataclass
class FolderEvaluation:
    metrics: dict[str, Any]
    written: list[Path]
    warnings: list[str] = field(default_factory=list)  # one line each, for stderr


def bundle_cameras_in(folder_cameras: list[str], bundle_cameras: list[str], root: Path) -> list[str]:
    """The bundle's cameras, in its order, all of which the folder must have (a folder may have more)."""
    missing = [name for name in bundle_cameras if name not in folder_cameras]
    if missing:
        raise FolderEvaluationError(
            f"the bundle's cameras {', '.join(bundle_cameras)} do not match {root}'s rig "
            f"({', '.join(folder_cameras)}): {', '.join(missing)} missing"
        )
    return list(bundle_cameras)


def evaluate_folder(cfg: FolderEvaluationConfig) -> FolderEvaluation:
    """Runs the bundle on every frame of the split; writes poses.csv, metrics.json, trajectory.png
    and reliability.png in cfg.out."""
    for name in RESULT_FILES:  # an interrupted or failed run must not leave an earlier run's beside its own
        (cfg.out / name).unlink(missing_ok=True)
    frames = split_frames(cfg.data, cfg.split)
    meta = read_metadata(cfg.data)
    rig = rig_from_metadata(cfg.data, meta)
    localizer = Localizer(cfg.bundle, backend=cfg.backend, mc_samples=cfg.mc_samples)
    cameras = bundle_cameras_in(rig.names, localizer.camera_names, cfg.data)
    rig_warnings = unlike_training_rig(rig, localizer.bundle)
    estimates, resize_warnings = localize_frames(localizer, cfg.data, frames, cameras)
    warnings = rig_warnings + resize_warnings
    if localizer.mc_samples <= 1 and not covariance_without_samples(localizer.bundle):
        # one pose and nothing that predicts a variance: every covariance is the floor
        warnings.append(
            f"with {localizer.mc_samples} MC sample(s) and no variance head, distance prior or ensemble, "
            "every covariance is the floor: the uncertainty figures say nothing (use the bundle's "
            f"mc_samples, {localizer.bundle.mc_samples})"
        )
    t_gt = np.stack([f.translation for f in frames])
    q_gt = np.stack([f.quat_xyzw for f in frames])
    sequences = np.array([f.sequence for f in frames], dtype=np.int64)
    stamps = np.array([f.stamp_ns for f in frames], dtype=np.int64)
    metrics = {
        "bundle": str(cfg.bundle),
        "data": str(cfg.data),
        "split": cfg.split,
        "engine": str(localizer.engine.describe()),
        "mc_samples": localizer.mc_samples,
        "cameras": cameras,
        "length_unit": length_unit(meta),
        **score(
            t_gt,
            q_gt,
            estimates,
            bundle_flag_thresholds(localizer.bundle.uncertain_flag),
            sequences,
            stamps,
        ),
    }
    cfg.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        cfg.out / "poses.csv", poses_csv(frames, estimates, metrics["uncertain_flag"]["thresholds"])
    )
    written = [cfg.out / "poses.csv"]
    try:
        from pose_regressor.evaluate_plots import plot_reliability, plot_trajectory
    except ImportError:  # matplotlib is a development dependency, not a robot one
        pass
    else:
        title = (
            f"{cfg.split} split of {cfg.data.name}: median {metrics['median_translation_m']:.2f} "
            f"{metrics['length_unit']}, "
            f"{metrics['median_rotation_deg']:.1f} deg ({metrics['frames']} frames)"
        )
        t_pred = np.stack([e.translation for e in estimates])
        covariances = np.stack([e.covariance for e in estimates])
        path = cfg.out / "trajectory.png"
        written.append(
            plot_trajectory(
                path,
                t_gt,
                t_pred,
                title,
                covariances,
                sequences,
                stamps_ns=stamps,
                unit=metrics["length_unit"],
            )
        )
        written.append(plot_reliability(cfg.out / "reliability.png", metrics, "the bundle's covariance"))
    # Last: metrics.json marks a complete evaluation (as eval-node's does).
    atomic_write_text(cfg.out / "metrics.json", json_text(metrics))
    return FolderEvaluation(metrics, [cfg.out / "metrics.json", *written], warnings)


def localize_frames(
    localizer: Localizer, root: Path, frames: list[FrameRecord], cameras: list[str]
) -> tuple[list[PoseEstimate], list[str]]:
    """The localizer's estimate of every frame, and one warning line per camera whose images are
    not the bundle's size (resized, as the node does)."""
    sizes = {camera: (c.width, c.height) for camera, c in zip(cameras, localizer.bundle.cameras, strict=True)}
    resized: dict[str, tuple[int, int, int]] = {}  # camera -> (width, height) seen, and how often
    estimates = []
    for f in frames:
        images = [read_rgb(image_path(root, camera, f.index)) for camera in cameras]
        for camera, image in zip(cameras, images, strict=True):
            height, width = image.shape[:2]
            if (width, height) != sizes[camera]:
                resized[camera] = (width, height, resized.get(camera, (0, 0, 0))[2] + 1)
        estimates.append(localizer.localize(images))
    warnings = [
        f"{count} of {len(frames)} images of camera {camera} are {width}x{height}, the bundle's "
        f"{sizes[camera][0]}x{sizes[camera][1]}: resized, as the node does with resize_mismatched: true"
        for camera, (width, height, count) in resized.items()
    ]
    return estimates, warnings


def unlike_training_rig(rig: Rig, bundle: ModelBundle) -> list[str]:
    """One line per bundle camera that the folder's rig mounts or calibrates otherwise than the rig
    the bundle was trained on (`provenance.rig`; nothing to say for a bundle without one). The
    cameras match by name only, so a folder of another robot would be scored without a word."""
    expected = expected_cameras(bundle)
    if expected is None:
        return []
    trained = {c.name: c for c in Rig.from_dict(bundle.provenance["rig"]).cameras}
    lines = []
    for camera in rig.cameras:
        if camera.name not in expected:
            continue
        k = camera.intrinsics.matrix().reshape(-1).tolist()
        problems = check_camera_info(
            camera.name,
            expected[camera.name],
            camera.intrinsics.width,
            camera.intrinsics.height,
            k,
            camera.optical_frame,
        )
        mounting = mounting_difference(camera, trained[camera.name])
        problems += [f"camera {camera.name}: {mounting}"] if mounting else []
        # check_camera_info speaks of a driver's camera_info; here the intrinsics are the folder's
        lines += [problem.replace(": camera_info ", ": the folder's intrinsics ") for problem in problems]
    return lines


def covariance_without_samples(bundle: ModelBundle) -> bool:
    """Whether one pose of `bundle` comes with a covariance of its own (not only the floor)."""
    return bundle.log_variance_output or bundle.distance_prior is not None or bundle.ensemble_members > 1


# One row per frame, so that a user can fuse, plot or inspect the very poses the metrics summarize.
POSES_CSV_COLUMNS = (
    "index,sequence,stamp_ns,tx,ty,tz,qx,qy,qz,qw,gt_tx,gt_ty,gt_tz,gt_qx,gt_qy,gt_qz,gt_qw,"
    "position_error,rotation_error_deg,position_std,rotation_std_deg,uncertain,"
    + ",".join(f"cov_{i}" for i in range(36))
)


def poses_csv(
    frames: list[FrameRecord], estimates: list[PoseEstimate], thresholds: Mapping[str, float]
) -> str:
    """poses.csv: each frame's estimate, its truth, errors, stds, the node's uncertain flag (1/0)
    at `thresholds` (max_position_std m, max_rotation_std rad) and the 6x6 covariance row-major as
    in PoseWithCovariance, rotation block about the fixed map axes (the residuals' convention)."""
    t_gt = np.stack([f.translation for f in frames])
    q_gt = np.stack([f.quat_xyzw for f in frames])
    t_pred = np.stack([e.translation for e in estimates])
    q_pred = np.stack([e.quat_xyzw for e in estimates])
    covariances = np.stack([e.covariance for e in estimates])
    t_err, r_err = pose_errors(t_gt, q_gt, t_pred, q_pred)
    pos_std, rot_std = node_stds(covariances)  # as the node's flag compares them (m, rad)
    # as the node flags (pipeline.uncertainty_reason): a threshold at its largest is no check
    position_on = not flag_check_off(thresholds["max_position_std"], MAX_FLAG_POSITION_STD)
    rotation_on = not flag_check_off(thresholds["max_rotation_std"], MAX_FLAG_ROTATION_STD)
    uncertain = (position_on & (pos_std > thresholds["max_position_std"])) | (
        rotation_on & (rot_std > thresholds["max_rotation_std"])
    )
    rot_std_deg = np.degrees(rot_std)
    lines = [POSES_CSV_COLUMNS]
    for i, f in enumerate(frames):
        values = [*t_pred[i], *q_pred[i], *t_gt[i], *q_gt[i], t_err[i], r_err[i], pos_std[i], rot_std_deg[i]]
        lines.append(
            f"{f.index},{f.sequence},{f.stamp_ns},"
            + ",".join(f"{v:.9g}" for v in values)
            + f",{int(uncertain[i])},"
            + ",".join(f"{v:.9g}" for v in covariances[i].ravel())
        )
    return "\n".join(lines) + "\n"


def score(
    t_gt: NDArray[np.float64],
    q_gt: NDArray[np.float64],
    estimates: list[PoseEstimate],
    flag_thresholds: tuple[float, float],
    sequences: NDArray[np.int64],
    stamps_ns: NDArray[np.int64],
) -> dict[str, Any]:
    """Error summary and uncertainty of `estimates` against the ground truth (metrics.json keys),
    the uncertain flag at `flag_thresholds` (max position std m, max rotation std rad)."""
    t_pred = np.stack([e.translation for e in estimates])
    q_pred = np.stack([e.quat_xyzw for e in estimates])
    covariances = np.stack([e.covariance for e in estimates])
    t_err, r_err = pose_errors(t_gt, q_gt, t_pred, q_pred)
    pos_std, rot_std = covariance_stds(covariances)
    residuals = tangent_residuals(t_gt, q_gt, t_pred, q_pred)
    nees = nees_values(residuals, covariances)
    return {
        **error_summary(t_err, r_err),
        "mean_nees": float(np.mean(nees)),
        "nees_expected": 6.0,
        "median_position_std_m": float(np.median(pos_std)),
        "median_rotation_std_deg": float(np.median(rot_std)),
        **published_uncertainty(t_err, r_err, residuals, covariances, *flag_thresholds),
        "error_correlation": error_correlation(residuals, covariances, sequences, stamps_ns),
    }
