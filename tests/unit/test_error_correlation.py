"""pose_regressor.error_correlation against known answers: the integrated autocorrelation time of
AR(1) errors, (1 + phi) / (1 - phi), whatever each frame's covariance; independent errors; too
short trajectories; file order; one stream of stamps cut at its gaps."""

from __future__ import annotations

import numpy as np
import pytest

from pose_regressor.error_correlation import (
    autocorrelation,
    error_correlation,
    integrated_time,
    whitened,
)

PERIOD_NS = 100_000_000  # 10 Hz


def ar1_errors(
    phi: float, sequences: int, length: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Residuals S z with z an AR(1) process of unit variance on each of 6 axes, and a random
    covariance S S for every frame (so only whitening recovers z)."""
    rng = np.random.default_rng(seed)
    n = sequences * length
    z = np.zeros((n, 6))
    for s in range(sequences):
        start = s * length
        z[start] = rng.standard_normal(6)
        for t in range(start + 1, start + length):
            z[t] = phi * z[t - 1] + np.sqrt(1 - phi**2) * rng.standard_normal(6)
    axes, _ = np.linalg.qr(rng.standard_normal((n, 6, 6)))
    root = axes @ (rng.uniform(0.01, 3.0, (n, 6, 1)) * axes.transpose(0, 2, 1))  # symmetric, positive
    covariances = root @ root
    residuals = (root @ z[:, :, None])[:, :, 0]
    seq = np.repeat(np.arange(sequences), length)
    stamps = np.tile(np.arange(length) * PERIOD_NS, sequences) + 1_700_000_000_000_000_000
    return residuals, covariances, seq, stamps


def test_whitening_undoes_each_frames_covariance() -> None:
    residuals, covariances, _, _ = ar1_errors(0.0, 4, 50)
    z = whitened(residuals, covariances)
    assert np.mean(z**2) == pytest.approx(1.0, abs=0.1)


@pytest.mark.parametrize("phi", [0.5, 0.8, 0.9])
def test_ar1_errors_give_their_integrated_time(phi: float) -> None:
    residuals, covariances, seq, stamps = ar1_errors(phi, 40, 300)
    result = error_correlation(residuals, covariances, seq, stamps)
    expected = (1 + phi) / (1 - phi)  # 3, 9, 19 frames
    assert result["frames"] == pytest.approx(expected, rel=0.2)
    assert result["seconds"] == pytest.approx(result["frames"] * 0.1)
    assert result["lag1"] == pytest.approx(phi, abs=0.03)
    assert result["truncated"] is False
    assert result["suggested_covariance_inflation"] == result["frames"]


def test_independent_errors_need_no_inflation() -> None:
    residuals, covariances, seq, stamps = ar1_errors(0.0, 20, 100)
    result = error_correlation(residuals, covariances, seq, stamps)
    assert result["frames"] == pytest.approx(1.0, abs=0.15)
    assert result["suggested_covariance_inflation"] >= 1.0
    assert abs(result["lag1"]) < 0.05


def test_trajectories_too_short_to_see_the_correlation_end_say_so() -> None:
    residuals, covariances, seq, stamps = ar1_errors(0.97, 200, 8)  # tau 66 frames, 8 per trajectory
    result = error_correlation(residuals, covariances, seq, stamps)
    assert result["truncated"] is True and result["lags_summed"] == 7
    assert 1.0 < result["frames"] < 66


def test_frames_out_of_order_are_put_in_time_order_first() -> None:
    residuals, covariances, seq, stamps = ar1_errors(0.8, 10, 100)
    ordered = error_correlation(residuals, covariances, seq, stamps)
    shuffled = np.random.default_rng(1).permutation(len(seq))
    again = error_correlation(residuals[shuffled], covariances[shuffled], seq[shuffled], stamps[shuffled])
    assert again["frames"] == pytest.approx(ordered["frames"], rel=1e-9)


def test_single_frames_carry_no_correlation() -> None:
    residuals, covariances, _, _ = ar1_errors(0.5, 5, 1)
    result = error_correlation(residuals, covariances, np.arange(5), None)
    assert result["frames"] is None and result["suggested_covariance_inflation"] is None


def test_integrated_time_stops_at_the_first_non_positive_lag() -> None:
    assert integrated_time(np.array([1.0, 0.5, 0.25, -0.1, 0.4])) == (2.5, 2, False)
    assert integrated_time(np.array([1.0, 0.5, 0.5])) == (3.0, 2, True)
    rho = autocorrelation(np.array([[1.0], [1.0], [-1.0], [-1.0]]), np.zeros(4, dtype=np.int64))
    assert rho.tolist() == pytest.approx([1.0, 1 / 3, -1.0, -1.0])


def test_one_stream_of_stamps_is_cut_at_gaps_and_loops() -> None:
    from pose_regressor.metrics import trajectory_pieces

    stamps = np.array([0, 100, 200, 300, 5_000, 5_100, 5_200, 50, 150]) * 1_000_000
    assert trajectory_pieces(np.zeros(9, np.int64), stamps).tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2]
    assert trajectory_pieces(np.zeros(1, np.int64), np.array([7])).tolist() == [0]
    # a gap inside a recording: no pair of frames across it (one shared error: rho 1 at every lag)
    residuals, covariances = np.ones((4, 6)), np.tile(np.eye(6), (4, 1, 1))
    zeros = np.zeros(4, np.int64)
    steady = error_correlation(residuals, covariances, zeros, np.arange(4) * PERIOD_NS)
    cut = error_correlation(residuals, covariances, zeros, np.array([0, 1, 2, 99]) * PERIOD_NS)
    assert (steady["lags_summed"], cut["lags_summed"]) == (3, 2)
