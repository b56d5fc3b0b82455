"""Accuracy and uncertainty metrics of estimated poses against ground truth.

One definition for both evaluations, `pose-train eval-checkpoint` (a checkpoint on a dataset split) and
`pose-regressor eval-node` (the running node on a replayed bag), so their metrics.json keys mean
the same thing. Errors: translation in metres (Euclidean), rotation in degrees (geodesic angle).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from pose_regressor import pose
from pose_regressor.uncertainty import block_std, nees, tangent_residual

FloatArray = NDArray[np.float64]

#: (metres, degrees) pairs of the ``pct_within_<m>m_<deg>deg`` metrics: 5 cm 5 deg is the usual
#: 7-Scenes threshold, the other three are the high/medium/low bins of the long-term visual
#: localization benchmark.
THRESHOLDS = ((0.05, 5.0), (0.25, 2.0), (0.5, 5.0), (5.0, 10.0))


def pose_errors(
    t_gt: FloatArray, q_gt: FloatArray, t_pred: FloatArray, q_pred: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Per-frame (translation error m, rotation error deg) of poses [N, 3] / [N, 4] (xyzw)."""
    return pose.translation_error(t_gt, t_pred), pose.rotation_error_deg(q_gt, q_pred)


def error_summary(t_err: FloatArray, r_err: FloatArray) -> dict[str, Any]:
    """frames, median and mean errors, and the percentage of frames within each of `THRESHOLDS`."""
    summary: dict[str, Any] = {
        "frames": len(t_err),
        "median_translation_m": float(np.median(t_err)),
        "median_rotation_deg": float(np.median(r_err)),
        "mean_translation_m": float(np.mean(t_err)),
        "mean_rotation_deg": float(np.mean(r_err)),
    }
    for metres, degrees in THRESHOLDS:
        summary[f"pct_within_{metres:g}m_{degrees:g}deg"] = float(
            100.0 * np.mean((t_err <= metres) & (r_err <= degrees))
        )
    return summary


def covariance_stds(covariances: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Per-frame (position std m, rotation std deg) of 6x6 covariances [N, 6, 6]: the root of the
    mean variance of each block, as `PoseEstimate.position_std` / `rotation_std`."""
    return block_std(covariances[:, :3, :3]), np.degrees(block_std(covariances[:, 3:, 3:]))


def tangent_residuals(
    t_gt: FloatArray, q_gt: FloatArray, t_pred: FloatArray, q_pred: FloatArray
) -> FloatArray:
    """Per-frame 6-vectors [N, 6] from the estimate to the truth (`uncertainty.tangent_residual`)."""
    return np.stack(
        [tangent_residual(tg, qg, tp, qp) for tg, qg, tp, qp in zip(t_gt, q_gt, t_pred, q_pred, strict=True)]
    )


def nees_values(residuals: FloatArray, covariances: FloatArray) -> FloatArray:
    """Per-frame NEES of residuals [N, 6] under covariances [N, 6, 6] (expected value 6)."""
    return np.array([nees(r, c) for r, c in zip(residuals, covariances, strict=True)])


#: A time step longer than this many median steps starts a new piece of trajectory.
GAP_FACTOR = 5.0


def trajectory_pieces(
    sequences: NDArray[np.int64], stamps_ns: NDArray[np.int64] | None = None
) -> NDArray[np.int64]:
    """A piece number per frame (in time order): a new piece where the sequence changes, or (with
    stamps) where time goes back or jumps more than `GAP_FACTOR` times the median step. The plots
    never draw a line across two pieces; `error_correlation` pairs frames within a piece only."""
    n = len(sequences)
    breaks = np.zeros(n, dtype=bool)
    breaks[1:] = sequences[1:] != sequences[:-1]
    if stamps_ns is not None and n > 1:
        steps = np.diff(np.asarray(stamps_ns, dtype=np.float64))
        forward = steps[(steps > 0) & ~breaks[1:]]
        limit = GAP_FACTOR * float(np.median(forward)) if len(forward) else np.inf
        breaks[1:] |= (steps <= 0) | (steps > limit)
    return np.cumsum(breaks).astype(np.int64)
