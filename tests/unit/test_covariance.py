"""Fixed-axis -> roll/pitch/yaw covariance conversion, checked by hand and against sampled rotations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from pose_regressor.covariance import (
    MIN_COS_PITCH,
    ROTATION_CONVENTIONS,
    fixed_axes_to_rpy,
    to_convention,
)


def quat_rpy_deg(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """xyzw of R = Rz(yaw) Ry(pitch) Rx(roll) (the tf2 / ROS convention)."""
    return np.asarray(Rotation.from_euler("ZYX", [yaw, pitch, roll], degrees=True).as_quat())


def generic_covariance(seed: int = 0) -> np.ndarray:
    """Non-diagonal 6x6 with translation/rotation correlation; rotation std ~ 0.01-0.03 rad."""
    a = np.random.default_rng(seed).normal(size=(6, 6))
    scale = np.diag([0.05, 0.08, 0.03, 0.01, 0.02, 0.015])
    return np.asarray(scale @ (a @ a.T / 6.0 + 0.3 * np.eye(6)) @ scale)


def test_conventions_names() -> None:
    assert ROTATION_CONVENTIONS == ("fixed_axes", "rpy")


def test_identity_at_level_yaw_zero() -> None:
    cov = generic_covariance()
    np.testing.assert_allclose(fixed_axes_to_rpy([0, 0, 0, 1], cov), cov, atol=1e-15)


def test_yaw_90_swaps_roll_and_pitch() -> None:
    cov = np.diag([0.1, 0.2, 0.3, 0.01, 0.04, 0.09])
    cov[0, 3] = cov[3, 0] = 0.005  # x correlates with rotation about map x
    cov[1, 4] = cov[4, 1] = 0.02  # y correlates with rotation about map y
    out = fixed_axes_to_rpy(quat_rpy_deg(0, 0, 90), cov)
    # Facing +y: roll is about map y, pitch about map -x.
    np.testing.assert_allclose(np.diag(out), [0.1, 0.2, 0.3, 0.04, 0.01, 0.09], atol=1e-12)
    assert out[1, 3] == pytest.approx(0.02)  # cov(y, roll) = cov(y, rot-y)
    assert out[0, 4] == pytest.approx(-0.005)  # cov(x, pitch) = -cov(x, rot-x)
    assert out[0, 3] == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(out[:3, :3], cov[:3, :3])


def rpy_of(rot: Rotation) -> np.ndarray:
    return np.asarray(rot.as_euler("ZYX"))[..., ::-1]


@pytest.mark.parametrize(
    ("rpy_deg", "cov"),
    [
        ((0.0, 0.0, 0.0), generic_covariance(1)),
        ((0.0, 0.0, 90.0), generic_covariance(2)),
        ((20.0, -30.0, 130.0), generic_covariance(3)),
        ((-170.0, 60.0, -100.0), generic_covariance(4)),
    ],
)
def test_matches_monte_carlo(rpy_deg: tuple[float, float, float], cov: np.ndarray) -> None:
    n = 400_000
    rng = np.random.default_rng(7)
    r_mean = Rotation.from_euler("ZYX", rpy_deg[::-1], degrees=True)
    e = rng.multivariate_normal(np.zeros(6), cov, size=n)
    samples = Rotation.from_rotvec(e[:, 3:]) * r_mean  # left (map-axis) perturbation
    d_rpy = rpy_of(samples) - rpy_of(r_mean)
    d_rpy = (d_rpy + np.pi) % (2.0 * np.pi) - np.pi  # unwrap across +-180 deg
    empirical = np.cov(np.concatenate([e[:, :3], d_rpy], axis=1), rowvar=False)

    converted = to_convention(r_mean.as_quat(), cov, "rpy")
    # Compare entries relative to the geometric mean of the two variances (correlation scale),
    # so near-zero off-diagonals are not judged by a relative error.
    sd = np.sqrt(np.diag(converted))
    np.testing.assert_allclose(np.diag(empirical), np.diag(converted), rtol=0.03)
    assert np.all(np.abs(empirical - converted) <= 0.03 * np.outer(sd, sd))


@pytest.mark.parametrize("pitch_deg", [90.0, -90.0, 89.9999])
def test_gimbal_lock_stays_finite_and_positive_definite(pitch_deg: float) -> None:
    cov = generic_covariance(5)
    out = fixed_axes_to_rpy(quat_rpy_deg(10.0, pitch_deg, 40.0), cov)
    assert np.all(np.isfinite(out))
    np.testing.assert_array_equal(out, out.T)
    np.linalg.cholesky(out)  # raises unless positive definite
    assert np.all(np.linalg.eigvalsh(out) > 0.0)
    # Roll is blown up by at most 1 / MIN_COS_PITCH^2 relative to the rotation variances.
    assert out[3, 3] <= 4.0 * np.trace(cov[3:, 3:]) / MIN_COS_PITCH**2


def test_fixed_axes_is_a_symmetric_copy() -> None:
    cov = generic_covariance(6)
    out = to_convention([0.1, 0.2, 0.3, 0.9], cov, "fixed_axes")
    np.testing.assert_allclose(out, cov)
    assert out is not cov


def test_errors() -> None:
    cov = np.eye(6)
    with pytest.raises(ValueError, match=r"allowed: fixed_axes, rpy"):
        to_convention([0, 0, 0, 1], cov, "euler")
    with pytest.raises(ValueError, match=r"shape \(6, 6\)"):
        fixed_axes_to_rpy([0, 0, 0, 1], np.eye(3))
    with pytest.raises(ValueError, match="non-finite"):
        fixed_axes_to_rpy([0, 0, 0, 1], np.full((6, 6), np.nan))
    with pytest.raises(ValueError, match="zero-norm"):
        fixed_axes_to_rpy([0, 0, 0, 0], cov)
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        fixed_axes_to_rpy([[0, 0, 0, 1]], cov)
