"""From Monte-Carlo dropout samples to a pose estimate with a 6x6 covariance (numpy, ROS-free).

The S samples of one camera set give the mean pose (translation mean, Markley quaternion
mean) and the sample covariance in the map-frame tangent space, ordered x, y, z, rot-x,
rot-y, rot-z (REP-103, the `PoseWithCovariance` layout, rotation residuals as R_i =
Exp(r_i) R_mean): the epistemic part. A model with a variance head also predicts a per-axis
log-variance for every sample; the mean of their exponentials is added on the diagonal (the
aleatoric part; Kendall & Gal 2017). The sum is scaled per axis group (position, rotation) by
a calibration fitted on held-out data (a scale and an exponent per group: the factor grows with
the block's own std, `CovarianceScale`) and floored on the diagonal, so it is always symmetric
positive definite, which is what an EKF needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pose_regressor import pose
from pose_regressor.distance_prior import DistancePrior

FloatArray = NDArray[np.float64]

# Floors: 1 mm and 0.01 deg standard deviation.
DEFAULT_MIN_POSITION_VARIANCE = 1e-3**2
DEFAULT_MIN_ROTATION_VARIANCE = np.radians(0.01) ** 2


# The exponent of a covariance's size (`CovarianceScale`): 1 is a plain scale; above 1 the calibrated
# std grows faster than the raw one, as the errors do where the model is unsure (docs/results.md,
# "A covariance that grows faster than the std"). Below 1 would shrink the covariance exactly where
# the model is least sure, so the contract stops at 1.
MIN_COVARIANCE_EXPONENT, MAX_COVARIANCE_EXPONENT = 1.0, 4.0
_GROUPS = ("position", "rotation")


@dataclass(frozen=True)
class CovarianceScale:
    """Calibration of the covariance per axis group (position, rotation).

    Each group's 3x3 block B of the raw covariance (MC spread plus the variance head's part) has a
    size s = sqrt(trace(B) / 3), its root mean variance. The group's factor is
    f = scale * (s / reference_std) ** (2 * (exponent - 1)): with exponent 1 (the default, and
    every calibration before exponents) it is the plain `scale`; with exponent g > 1 the calibrated
    std sqrt(f) * s = sqrt(scale) * reference_std * (s / reference_std) ** g grows as the g-th
    power of the raw one, and `scale` is the factor at the reference size (the median on the data
    it was fitted on). The blocks are multiplied by their factors and the cross block by their
    geometric mean (C -> D C D with D = diag(sqrt(f_position) x 3, sqrt(f_rotation) x 3)), so C
    stays positive semi-definite. One scalar s is `CovarianceScale.uniform(s)`."""

    position: float = 1.0
    rotation: float = 1.0
    position_exponent: float = 1.0
    rotation_exponent: float = 1.0
    position_reference_std: float = 1.0  # m
    rotation_reference_std: float = 1.0  # rad

    def __post_init__(self) -> None:
        for name in _GROUPS:
            for key in (name, f"{name}_reference_std"):
                value = getattr(self, key)
                if not (np.isfinite(value) and value > 0):
                    raise ValueError(f"covariance_scale {key} must be a positive finite number, got {value}")
            exponent = getattr(self, f"{name}_exponent")
            if not (np.isfinite(exponent) and MIN_COVARIANCE_EXPONENT <= exponent <= MAX_COVARIANCE_EXPONENT):
                raise ValueError(
                    f"covariance_scale {name}_exponent must be in [{MIN_COVARIANCE_EXPONENT:g}, "
                    f"{MAX_COVARIANCE_EXPONENT:g}], got {exponent}"
                )

    @classmethod
    def uniform(cls, scale: float) -> CovarianceScale:
        return cls(float(scale), float(scale))

    @classmethod
    def from_json(cls, value: Any) -> CovarianceScale:
        """A number (one scale for both groups), ``{position: p, rotation: r}``, or that with
        ``<group>_exponent`` and ``<group>_reference_std`` (both or neither, per group), as
        metrics.json and bundle.yaml write them. Raises ValueError naming what is wrong."""
        if isinstance(value, Mapping):
            problems = mapping_problems(value)
            if problems:
                raise ValueError(problems[0])
            fields: dict[str, float] = {}
            for key, number in value.items():
                if isinstance(number, bool) or not isinstance(number, int | float):
                    raise ValueError(f"covariance_scale {key} must be a number, got {number!r}")
                fields[str(key)] = float(number)
            return cls(**fields)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"covariance_scale must be a number or {{position, rotation}}, got {value!r}")
        return cls.uniform(float(value))

    def to_json(self) -> float | dict[str, float]:
        """One number when uniform (what bundles always held), ``{position, rotation}`` when the
        groups differ, and with each group's exponent and reference std when an exponent is not 1."""
        if self.has_exponents:
            return self.as_mapping()
        if self.is_uniform:
            return self.position
        return {"position": self.position, "rotation": self.rotation}

    def as_mapping(self) -> dict[str, float]:
        """Always a mapping (metrics.json's form): the scales, and the exponents and reference stds
        when an exponent is not 1 (`CovarianceScale(**mapping)` gives this calibration back)."""
        out = {"position": self.position, "rotation": self.rotation}
        if self.has_exponents:
            for name in _GROUPS:
                out[f"{name}_exponent"] = getattr(self, f"{name}_exponent")
                out[f"{name}_reference_std"] = getattr(self, f"{name}_reference_std")
        return out

    @property
    def has_exponents(self) -> bool:
        return self.position_exponent != 1.0 or self.rotation_exponent != 1.0

    @property
    def is_uniform(self) -> bool:
        return self.position == self.rotation and not self.has_exponents

    def factors(self, covariance: FloatArray) -> FloatArray:
        """The (position, rotation) factors of one covariance (6, 6) or of a stack (..., 6, 6)."""
        c = np.asarray(covariance, dtype=np.float64)
        out = []
        for name, block in (("position", slice(0, 3)), ("rotation", slice(3, 6))):
            scale = getattr(self, name)
            exponent = getattr(self, f"{name}_exponent")
            if exponent == 1.0:
                out.append(np.full(c.shape[:-2], scale))
                continue
            reference = getattr(self, f"{name}_reference_std")
            out.append(scale * exponent_factor(c[..., block, block], exponent, reference))
        return np.stack(out, axis=-1)

    def apply(self, covariance: FloatArray) -> FloatArray:
        """D C D (see the class docstring) of one covariance (6, 6) or a stack (..., 6, 6); a
        uniform scale s gives exactly s * C."""
        if self.is_uniform:
            return covariance * self.position
        f = np.sqrt(self.factors(covariance))
        d = np.repeat(f, 3, axis=-1)
        return np.asarray(covariance * d[..., :, None] * d[..., None, :], dtype=np.float64)

    def describe(self) -> str:
        """``"2.5"``, ``"position 2.1, rotation 40"`` or, with exponents,
        ``"position 0.23 (std^2.0 about 0.12 m), rotation 0.26 (std^2.8 about 1.9 deg)"``."""
        if self.is_uniform:
            return f"{self.position:.4g}"
        if not self.has_exponents:
            return f"position {self.position:.4g}, rotation {self.rotation:.4g}"
        return (
            f"position {self.position:.4g} (std^{self.position_exponent:.2f} about "
            f"{self.position_reference_std:.3g} m), rotation {self.rotation:.4g} "
            f"(std^{self.rotation_exponent:.2f} about {np.degrees(self.rotation_reference_std):.3g} deg)"
        )


def block_std(blocks: FloatArray) -> FloatArray:
    """The root mean variance sqrt(trace / 3) of 3x3 blocks (..., 3, 3): a group's std, as
    `PoseEstimate.position_std` defines it (a trace below 0, from rounding, counts as 0)."""
    traces = np.trace(np.asarray(blocks, dtype=np.float64), axis1=-2, axis2=-1)
    return np.asarray(np.sqrt(np.maximum(traces, 0.0) / 3.0), dtype=np.float64)


def exponent_factor(blocks: FloatArray, exponent: float, reference_std: float) -> FloatArray:
    """What an exponent multiplies each 3x3 block (..., 3, 3) by, besides its group's scale:
    (block_std / reference_std) ** (2 (exponent - 1)) (`CovarianceScale`)."""
    return np.asarray((block_std(blocks) / reference_std) ** (2.0 * (exponent - 1.0)), dtype=np.float64)


def mapping_problems(value: Mapping[Any, Any]) -> list[str]:
    """What is wrong with the keys of a `covariance_scale` mapping (empty: nothing), one line each."""
    keys = {str(k) for k in value}
    known = {"position", "rotation"} | {f"{g}_{s}" for g in _GROUPS for s in ("exponent", "reference_std")}
    problems = []
    if not {"position", "rotation"} <= keys or keys - known:
        problems.append(
            "covariance_scale must map position and rotation (and optionally <group>_exponent and "
            f"<group>_reference_std) to numbers, got keys {sorted(keys)}"
        )
    for group in _GROUPS:
        pair = {f"{group}_exponent", f"{group}_reference_std"}
        if len(pair & keys) == 1:
            problems.append(f"covariance_scale needs both {' and '.join(sorted(pair))}, or neither")
    return problems


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
    distance_prior: DistancePrior | None = None,
) -> PoseEstimate:
    """Mean pose and calibrated, floored covariance of S pose samples ((S, 3), (S, 4)).

    covariance = scale(MC spread + diag(mean_s exp(log_variances[s])) + prior) + floor, where
    `log_variances` (S, 6) is the variance head's output (None: the MC spread alone) and prior
    adds `distance_prior`'s k d^2 to each position axis (d: the mean position's distance to the
    nearest training position; None: nothing). With one sample, no log-variances and no prior the
    covariance is the floor alone.
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
    if distance_prior is not None:
        spread = spread + np.diag([distance_prior.variance(t_mean)] * 3 + [0.0] * 3)
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
