"""MC-dropout post-processing: mean pose and calibrated covariance from sample clouds of known spread."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from pose_regressor.uncertainty import dropout_masks, estimate_from_samples, nees, tangent_residual


def sample_cloud(cov: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t0 = np.array([1.0, -2.0, 0.5])
    r0 = Rotation.from_euler("ZYX", [40, 10, -5], degrees=True)
    e = rng.multivariate_normal(np.zeros(6), cov, size=n)
    t = t0 + e[:, :3]
    q = (Rotation.from_rotvec(e[:, 3:]) * r0).as_quat()  # map-frame (left) perturbation
    return t, q, t0, r0.as_quat()


def test_recovers_known_covariance_and_mean() -> None:
    a = np.random.default_rng(1).normal(size=(6, 6)) * 0.02
    cov = a @ a.T + np.diag([0.01, 0.02, 0.005, 0.001, 0.002, 0.003])
    t, q, t0, q0 = sample_cloud(cov, 20000, seed=2)
    est = estimate_from_samples(t, q)
    np.testing.assert_allclose(est.translation, t0, atol=0.01)
    assert (Rotation.from_quat(est.quat_xyzw).inv() * Rotation.from_quat(q0)).magnitude() < 0.005
    np.testing.assert_allclose(est.covariance, cov, atol=0.06 * np.abs(cov).max())
    assert est.samples == 20000


def test_scale_and_floor() -> None:
    cov = np.diag([0.04, 0.04, 0.04, 0.01, 0.01, 0.01])
    t, q, _, _ = sample_cloud(cov, 4000, seed=3)
    base = estimate_from_samples(t, q, min_position_variance=0.0, min_rotation_variance=0.0)
    scaled = estimate_from_samples(
        t, q, covariance_scale=4.0, min_position_variance=0.0, min_rotation_variance=0.0
    )
    np.testing.assert_allclose(scaled.covariance, 4.0 * base.covariance)
    assert scaled.position_std == pytest.approx(2 * base.position_std)
    single = estimate_from_samples(t[:1], q[:1], min_position_variance=1e-4, min_rotation_variance=1e-6)
    np.testing.assert_allclose(single.covariance, np.diag([1e-4] * 3 + [1e-6] * 3))


def test_always_symmetric_positive_definite_even_for_identical_samples() -> None:
    t = np.tile([1.0, 2.0, 3.0], (16, 1))
    q = np.tile([0.0, 0.0, 0.0, 1.0], (16, 1))
    est = estimate_from_samples(t, q)
    np.testing.assert_array_equal(est.covariance, est.covariance.T)
    assert np.linalg.eigvalsh(est.covariance).min() > 0
    assert est.is_finite()


def test_nees_of_consistent_errors_is_the_dimension() -> None:
    cov = np.diag([0.04, 0.01, 0.09, 0.001, 0.004, 0.002])
    t, q, t0, q0 = sample_cloud(cov, 5000, seed=5)
    values = [nees(tangent_residual(ti, qi, t0, q0), cov) for ti, qi in zip(t, q, strict=True)]
    assert np.mean(values) == pytest.approx(6.0, rel=0.05)


def test_tangent_residual_is_a_left_perturbation() -> None:
    r = np.array([0.01, -0.02, 0.03])
    q_mean = Rotation.from_euler("z", 70, degrees=True).as_quat()
    q_true = (Rotation.from_rotvec(r) * Rotation.from_quat(q_mean)).as_quat()
    res = tangent_residual(np.array([1.0, 0, 0]), q_true, np.zeros(3), q_mean)
    np.testing.assert_allclose(res, [1.0, 0, 0, *r], atol=1e-12)


def test_dropout_masks_seeded_and_scaled() -> None:
    a = dropout_masks(32, 256, 0.2, np.random.default_rng(7))
    b = dropout_masks(32, 256, 0.2, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32 and a.shape == (32, 256)
    assert sorted(np.unique(a).tolist()) == pytest.approx([0.0, 1.25])
    assert (a == 0).mean() == pytest.approx(0.2, abs=0.02)
    with pytest.raises(ValueError):
        dropout_masks(1, 8, 1.0, np.random.default_rng(0))
