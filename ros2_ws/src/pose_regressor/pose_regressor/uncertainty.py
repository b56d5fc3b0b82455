"""From Monte-Carlo dropout samples to a pose estimate with a 6x6 covariance (numpy, ROS-free).

The S samples of one camera set give the mean pose (translation mean, Markley quaternion
mean) and the sample covariance in the map-frame tangent space, ordered x, y, z, rot-x,
rot-y, rot-z (REP-103, the `PoseWithCovariance` layout, rotation residuals as R_i =
Exp(r_i) R_mean). The covariance is multiplied by a scale calibrated on held-out data
(raw MC-dropout spread is usually too small) and floored on the diagonal, so it is always
symmetric positive definite, which is what an EKF needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from pose_regressor import pose

FloatArray = NDArray[np.float64]

# Floors: 1 mm and 0.01 deg standard deviation.
DEFAULT_MIN_POSITION_VARIANCE = 1e-3**2
DEFAULT_MIN_ROTATION_VARIANCE = np.radians(0.01) ** 2


@dataclass(frozen=True)
class PoseEstimate:
    """Mean pose `T_map_base` and its covariance (6x6, metres and radians)."""

    translation: FloatArray  # (3,)
    quat_xyzw: FloatArray  # (4,), w >= 0
    covariance: FloatArray  # (6, 6)
    samples: int

    @property
    def position_std(self) -> float:
        """Root of the mean position variance (m): sqrt(trace(cov_xyz) / 3)."""
        return float(np.sqrt(np.trace(self.covariance[:3, :3]) / 3.0))

    @property
    def rotation_std(self) -> float:
        """Root of the mean rotation variance (rad): sqrt(trace(cov_rot) / 3)."""
        return float(np.sqrt(np.trace(self.covariance[3:, 3:]) / 3.0))

    def is_finite(self) -> bool:
        return bool(
            np.all(np.isfinite(self.translation))
            and np.all(np.isfinite(self.quat_xyzw))
            and np.all(np.isfinite(self.covariance))
        )


def estimate_from_samples(
    translations: FloatArray,
    quats_xyzw: FloatArray,
    covariance_scale: float = 1.0,
    min_position_variance: float = DEFAULT_MIN_POSITION_VARIANCE,
    min_rotation_variance: float = DEFAULT_MIN_ROTATION_VARIANCE,
) -> PoseEstimate:
    """Mean pose and scaled, floored covariance of S pose samples ((S, 3), (S, 4)).

    With one sample the covariance is the floor alone (no spread can be measured).
    """
    t = np.asarray(translations, dtype=np.float64).reshape(-1, 3)
    q = np.asarray(quats_xyzw, dtype=np.float64).reshape(-1, 4)
    if len(t) != len(q) or len(t) == 0:
        raise ValueError(
            f"need the same number (>= 1) of translations and rotations, got {len(t)} and {len(q)}"
        )
    if covariance_scale <= 0:
        raise ValueError(f"covariance_scale must be positive, got {covariance_scale}")
    t_mean, q_mean = pose.mean_pose(t, q)
    spread = pose.pose_covariance(t, q, t_mean, q_mean) if len(t) >= 2 else np.zeros((6, 6))
    cov = spread * covariance_scale
    floor = np.array([min_position_variance] * 3 + [min_rotation_variance] * 3)
    cov = cov + np.diag(floor)
    return PoseEstimate(t_mean, q_mean, 0.5 * (cov + cov.T), len(t))


def dropout_masks(
    samples: int, hidden_dim: int, dropout: float, rng: np.random.Generator
) -> NDArray[np.float32]:
    """S Monte-Carlo dropout masks [S, D]: each unit kept with probability 1 - p and scaled by 1 / (1 - p).

    A mask of ones (not produced here) gives the deterministic prediction.
    """
    if samples < 1 or hidden_dim < 1:
        raise ValueError("samples and hidden_dim must be >= 1")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    # the same rule as the training masks (PoseRegressor.random_masks): keep where u >= p
    keep = rng.random((samples, hidden_dim)) >= dropout
    # float32: the graph's dropout_mask input (bundle.GRAPH_INPUTS)
    return (keep / (1.0 - dropout)).astype(np.float32)


def tangent_residual(
    t_true: FloatArray, q_true: FloatArray, t_mean: FloatArray, q_mean: FloatArray
) -> FloatArray:
    """The 6-vector (x, y, z, rot-x, rot-y, rot-z) from the estimate to the truth: R_true = Exp(r) R_mean."""
    _, r_rel = pose.compose(np.zeros(3), q_true, np.zeros(3), pose.inverse(np.zeros(3), q_mean)[1])
    return np.concatenate([np.asarray(t_true) - np.asarray(t_mean), pose.quaternion_to_rotvec(r_rel)])


def nees(residual: FloatArray, covariance: FloatArray) -> float:
    """Normalized estimation error squared r^T C^-1 r (expected value: the dimension, 6)."""
    # solve rather than inv(C): cheaper and more accurate for a near-singular C
    return float(residual @ np.linalg.solve(covariance, residual))
