"""The covariance calibration with an exponent per axis group (`CovarianceScale`,
`pose_regressor_training.calibration`): what it does to a covariance, how it is fitted, and how a
bundle carries it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy.stats import chi2

from pose_regressor.bundle import load_bundle
from pose_regressor.metrics import nees_values
from pose_regressor.uncertainty import CovarianceScale, estimate_from_samples
from pose_regressor_training.calibration import (
    HELD_OUT_FOLDS,
    MIN_FRAMES_FOR_EXPONENT,
    calibration_split_names,
    fit_covariance_exponent,
    fit_covariance_scales,
    held_out_consistency,
)
from tests.unit.bundle_fixtures import make_bundle

SHAPED = CovarianceScale(
    0.2,
    0.3,
    position_exponent=2.0,
    rotation_exponent=3.0,
    position_reference_std=0.1,
    rotation_reference_std=0.02,
)


def _random_covariances(n: int, seed: int) -> np.ndarray:
    a = np.random.default_rng(seed).normal(size=(n, 6, 6)) * 0.05
    return a @ np.swapaxes(a, 1, 2) + 1e-6 * np.eye(6)


def test_an_exponent_scales_each_block_by_a_power_of_its_size() -> None:
    cov = np.diag([0.04] * 3 + [1e-4] * 3)  # position size 0.2 m (2x the reference), rotation 0.01 (half)
    out = SHAPED.apply(cov)
    # factor = scale * (size / reference) ** (2 (exponent - 1))
    np.testing.assert_allclose(out.diagonal()[:3], 0.04 * 0.2 * 2.0**2)
    np.testing.assert_allclose(out.diagonal()[3:], 1e-4 * 0.3 * 0.5**4)
    # the calibrated std is sqrt(scale) * reference * (size / reference) ** exponent
    np.testing.assert_allclose(np.sqrt(out[0, 0]), np.sqrt(0.2) * 0.1 * 2.0**2)


def test_a_stack_is_calibrated_frame_by_frame_and_stays_positive_definite() -> None:
    covs = _random_covariances(50, 0)
    stacked = SHAPED.apply(covs)
    for c, s in zip(covs, stacked, strict=True):
        np.testing.assert_allclose(SHAPED.apply(c), s, rtol=1e-12)
        assert np.linalg.eigvalsh(s).min() > 0
        np.testing.assert_allclose(s, s.T)


def test_exponent_one_is_the_plain_scale_bit_for_bit() -> None:
    covs = _random_covariances(5, 1)
    plain = CovarianceScale(2.0, 3.0)
    with_unit_exponents = CovarianceScale(2.0, 3.0, position_reference_std=0.5, rotation_reference_std=0.1)
    np.testing.assert_array_equal(plain.apply(covs), with_unit_exponents.apply(covs))
    assert (
        plain.to_json() == {"position": 2.0, "rotation": 3.0}
        and CovarianceScale.uniform(2.0).to_json() == 2.0
    )


def test_a_zero_covariance_stays_zero_under_an_exponent() -> None:
    np.testing.assert_array_equal(SHAPED.apply(np.zeros((6, 6))), np.zeros((6, 6)))


def test_json_round_trip_and_description() -> None:
    assert CovarianceScale.from_json(SHAPED.to_json()) == SHAPED
    assert CovarianceScale(**SHAPED.as_mapping()) == SHAPED
    assert set(SHAPED.as_mapping()) == {
        "position",
        "rotation",
        "position_exponent",
        "rotation_exponent",
        "position_reference_std",
        "rotation_reference_std",
    }
    assert SHAPED.describe() == "position 0.2 (std^2.00 about 0.1 m), rotation 0.3 (std^3.00 about 1.15 deg)"


def test_the_estimate_applies_the_exponent_before_the_floor() -> None:
    rng = np.random.default_rng(3)
    t = rng.normal(scale=0.3, size=(16, 3))
    q = np.tile([0.0, 0.0, 0.0, 1.0], (16, 1))
    plain = estimate_from_samples(t, q, 1.0, min_position_variance=0.0, min_rotation_variance=0.0)
    shaped = estimate_from_samples(t, q, SHAPED, min_position_variance=0.0, min_rotation_variance=0.0)
    np.testing.assert_allclose(shaped.covariance, SHAPED.apply(plain.covariance), atol=1e-15)


def _draw(n: int, true_exponent: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw block sizes log-uniform in [0.05, 0.4]; the true error std 0.5 * size ** true_exponent."""
    rng = np.random.default_rng(seed)
    size = np.exp(rng.uniform(np.log(0.05), np.log(0.4), n))
    covs = np.zeros((n, 6, 6))
    covs[:, :3, :3] = (size**2)[:, None, None] * np.eye(3)
    covs[:, 3:, 3:] = (size**2)[:, None, None] * np.eye(3) * 1e-2
    true_std = 0.5 * size**true_exponent
    residuals = rng.normal(size=(n, 6)) * np.concatenate(
        [true_std[:, None]] * 3 + [0.1 * true_std[:, None]] * 3, axis=1
    )
    return residuals, covs, size


def test_the_fitted_exponent_recovers_how_fast_the_errors_grow_and_keeps_the_large_ones_covered() -> None:
    residuals, covs, _ = _draw(4000, 2.0, 0)
    scale = fit_covariance_scales(residuals, covs)
    assert scale.position_exponent == pytest.approx(2.0, abs=0.08)
    assert scale.rotation_exponent == pytest.approx(2.0, abs=0.08)
    # scored on a fresh draw: the frames with the largest raw std are covered as the others are
    fresh, fresh_covs, size = _draw(4000, 2.0, 1)
    top = size > np.quantile(size, 0.9)
    limit = chi2.ppf(0.95, 3)
    shaped = nees_values(fresh[:, :3], scale.apply(fresh_covs)[:, :3, :3])
    plain = nees_values(
        fresh[:, :3], fit_covariance_scales(residuals, covs, exponents=False).apply(fresh_covs)[:, :3, :3]
    )
    assert np.mean(shaped < limit) == pytest.approx(0.95, abs=0.015)
    assert np.mean(shaped[top] < limit) > 0.9
    assert np.mean(plain[top] < limit) < 0.75  # a plain scale leaves the unsure frames uncovered


def test_errors_that_grow_as_the_std_keep_exponent_one() -> None:
    residuals, covs, _ = _draw(4000, 1.0, 2)
    exponent, _ = fit_covariance_exponent(residuals[:, :3], covs[:, :3, :3])
    assert exponent == pytest.approx(1.0, abs=0.03)


def test_too_few_frames_or_one_size_keep_the_plain_scale() -> None:
    residuals, covs, _ = _draw(MIN_FRAMES_FOR_EXPONENT - 1, 2.0, 3)
    assert fit_covariance_exponent(residuals[:, :3], covs[:, :3, :3]) == (1.0, 1.0)
    same = np.tile(np.eye(3) * 0.01, (1000, 1, 1))
    assert fit_covariance_exponent(np.random.default_rng(4).normal(size=(1000, 3)), same) == (1.0, 1.0)
    zeros = np.zeros((1000, 3, 3))
    assert fit_covariance_exponent(np.ones((1000, 3)), zeros) == (1.0, 1.0)


def test_held_out_stretches_of_consistent_errors_score_as_chi_square() -> None:
    residuals, covs, _ = _draw(2000, 1.0, 5)
    blocks = np.arange(2000) // 20  # 100 stretches of 20 frames
    check = held_out_consistency(residuals, covs, blocks)
    assert check is not None
    assert (check["blocks"], check["folds"]) == (100, HELD_OUT_FOLDS)
    # the 90th percentile is matched on the other folds, so the held-out frames get chi2(6)'s numbers
    assert check["mean_nees"] == pytest.approx(6.0, rel=0.1)
    assert check["inside_95"] == pytest.approx(0.95, abs=0.02)
    assert len(check["mean_nees_per_fold"]) == HELD_OUT_FOLDS


def test_held_out_stretches_show_a_stretch_the_calibration_does_not_fit() -> None:
    """Four stretches, the last with errors 3x what its stds say: fitted on the first three, as a
    val split of one stretch cannot show, that stretch's NEES is about 9x the others'."""
    residuals, covs, _ = _draw(400, 1.0, 6)
    blocks = np.repeat([10, 20, 30, 40], 100)  # ids need not be 0..n-1
    residuals[blocks == 40] *= 3.0
    check = held_out_consistency(residuals, covs, blocks)
    assert check is not None and (check["blocks"], check["folds"]) == (4, 4)
    per_fold = check["mean_nees_per_fold"]  # folds in block-id order: the bad stretch is the last
    assert per_fold[3] > 5 * max(per_fold[:3])
    assert check["inside_95"] < 0.85
    assert held_out_consistency(residuals[:100], covs[:100], blocks[:100]) is None  # one stretch


def test_calib_split_names_are_a_comma_separated_list() -> None:
    assert calibration_split_names("val,test") == ("val", "test")
    assert calibration_split_names(" val , ,val,test ") == ("val", "test")
    assert calibration_split_names("") == calibration_split_names(None) == ()


def test_a_bundle_carries_the_exponents(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b", covariance_scale=SHAPED)
    text = yaml.safe_load(bundle.yaml_path.read_text())
    assert text["covariance_scale"] == SHAPED.as_mapping()
    assert load_bundle(bundle.path).covariance_scale == SHAPED
