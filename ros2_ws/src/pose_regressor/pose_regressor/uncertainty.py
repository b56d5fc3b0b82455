"""From Monte-Carlo dropout samples to a pose estimate with a 6x6 covariance (numpy, ROS-free).

The S samples of one camera set give the mean pose (translation mean, Markley quaternion
mean) and the sample covariance in the map-frame tangent space, ordered x, y, z, rot-x,
rot-y, rot-z (REP-103, the `PoseWithCovariance` layout, rotation residuals as R_i =
Exp(r_i) R_mean): the epistemic part. A model with a variance head also predicts a per-axis
log-variance for every sample; the mean of their exponentials is added on the diagonal (the
aleatoric part; Kendall & Gal 2017). The sum is scaled per axis group (position, rotation) by
scales calibrated on held-out data and floored on the diagonal, so it is always symmetric
positive definite, which is what an EKF needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pose_regressor import pose

FloatArray = NDArray[np.float64]

# Floors: 1 mm and 0.01 deg standard deviation.
DEFAULT_MIN_POSITION_VARIANCE = 1e-3**2
DEFAULT_MIN_ROTATION_VARIANCE = np.radians(0.01) ** 2


@dataclass(frozen=True)
class CovarianceScale:
    """Calibration of the covariance per axis group: the position block is multiplied by
    `position`, the rotation block by `rotation` and the cross block by their geometric mean
    (C -> D C D with D = diag(sqrt(position) x 3, sqrt(rotation) x 3), so C stays positive
    semi-definite). One scalar s is `CovarianceScale.uniform(s)`."""

    position: float = 1.0
    rotation: float = 1.0

    def __post_init__(self) -> None:
        for name, value in (("position", self.position), ("rotation", self.rotation)):
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"covariance_scale {name} must be a positive finite number, got {value}")

    @classmethod
    def uniform(cls, scale: float) -> CovarianceScale:
        return cls(float(scale), float(scale))

    @classmethod
    def from_json(cls, value: Any) -> CovarianceScale:
        """A number (one scale for both groups) or ``{position: p, rotation: r}``, as metrics.json
        and bundle.yaml write them. Raises ValueError naming what is wrong."""
        if isinstance(value, Mapping):
            extra = sorted(str(k) for k in set(value) - {"position", "rotation"})
            if extra or not {"position", "rotation"} <= set(value):
                raise ValueError(
                    f"covariance_scale must map exactly position and rotation to numbers, got {dict(value)!r}"
                )
            position, rotation = value["position"], value["rotation"]
            for name, number in (("position", position), ("rotation", rotation)):
                if isinstance(number, bool) or not isinstance(number, int | float):
                    raise ValueError(f"covariance_scale {name} must be a number, got {number!r}")
            return cls(float(position), float(rotation))
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"covariance_scale must be a number or {{position, rotation}}, got {value!r}")
        return cls.uniform(float(value))

    def to_json(self) -> float | dict[str, float]:
        """One number when uniform (what bundles always held), else ``{position, rotation}``."""
        if self.is_uniform:
            return self.position
        return {"position": self.position, "rotation": self.rotation}

    @property
    def is_uniform(self) -> bool:
        return self.position == self.rotation

    def apply(self, covariance: FloatArray) -> FloatArray:
        """D C D (see the class docstring); a uniform scale s gives exactly s * C."""
        if self.is_uniform:
            return covariance * self.position
        d = np.sqrt(np.array([self.position] * 3 + [self.rotation] * 3))
        return np.asarray(covariance * d[:, None] * d[None, :], dtype=np.float64)

    def describe(self) -> str:
        """``"2.5"`` or ``"position 2.1, rotation 40"``, for logs and CLI summaries."""
        if self.is_uniform:
            return f"{self.position:.4g}"
        return f"position {self.position:.4g}, rotation {self.rotation:.4g}"


# Clamp of predicted log-variances (the model clamps too): std between 3.4e-4 and 7.4 (m or rad).
MIN_LOG_VARIANCE, MAX_LOG_VARIANCE = -16.0, 4.0


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
    covariance_scale: float | CovarianceScale = 1.0,
    min_position_variance: float = DEFAULT_MIN_POSITION_VARIANCE,
    min_rotation_variance: float = DEFAULT_MIN_ROTATION_VARIANCE,
    log_variances: FloatArray | None = None,
) -> PoseEstimate:
    """Mean pose and calibrated, floored covariance of S pose samples ((S, 3), (S, 4)).

    covariance = scale(MC spread + diag(mean_s exp(log_variances[s]))) + floor, where
    `log_variances` (S, 6) is the variance head's output (None: the MC spread alone).
    With one sample and no log-variances the covariance is the floor alone.
    """
    t = np.asarray(translations, dtype=np.float64).reshape(-1, 3)
    q = np.asarray(quats_xyzw, dtype=np.float64).reshape(-1, 4)
    if len(t) != len(q) or len(t) == 0:
        raise ValueError(
            f"need the same number (>= 1) of translations and rotations, got {len(t)} and {len(q)}"
        )
    if not isinstance(covariance_scale, CovarianceScale):
        if covariance_scale <= 0:
            raise ValueError(f"covariance_scale must be positive, got {covariance_scale}")
        covariance_scale = CovarianceScale.uniform(covariance_scale)
    t_mean, q_mean = pose.mean_pose(t, q)
    spread = pose.pose_covariance(t, q, t_mean, q_mean) if len(t) >= 2 else np.zeros((6, 6))
    if log_variances is not None:
        spread = spread + np.diag(aleatoric_variance(log_variances, len(t)))
    cov = covariance_scale.apply(spread)
    floor = np.array([min_position_variance] * 3 + [min_rotation_variance] * 3)
    cov = cov + np.diag(floor)
    return PoseEstimate(t_mean, q_mean, 0.5 * (cov + cov.T), len(t))


def aleatoric_variance(log_variances: FloatArray, samples: int) -> FloatArray:
    """The per-axis variance (6,) of a variance head's S log-variances (S, 6): the mean over the
    samples of exp(log-variance), clamped to the model's range (a defensive copy of its clamp)."""
    lv = np.asarray(log_variances, dtype=np.float64)
    if lv.shape != (samples, 6):
        raise ValueError(f"log_variances must have shape ({samples}, 6), got {lv.shape}")
    return np.asarray(np.exp(np.clip(lv, MIN_LOG_VARIANCE, MAX_LOG_VARIANCE)).mean(axis=0))


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
