"""Uncertainty metrics with known answers: NEES per block, ellipsoid coverage, AUROC, gross errors,
and the uncertain flag's score and suggested thresholds, and the Spearman(std, error) of exact covariances."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy.stats import chi2

from pose_regressor.metrics import nees_values
from pose_regressor.uncertainty_metrics import (
    RELIABILITY_LEVELS,
    auroc,
    block_nees,
    consistency,
    coverage,
    flag_rates,
    gross_errors,
    operating_points,
    published_uncertainty,
    sequence_bootstrap_interval,
    spearman,
    spearman_if_exact,
    spearman_interval,
    uncertain_flag_report,
)


def random_covariances(n: int, seed: int) -> np.ndarray:
    a = np.random.default_rng(seed).normal(size=(n, 6, 6))
    return a @ a.transpose(0, 2, 1) + 0.1 * np.eye(6)


def test_block_nees_of_the_whole_pose_matches_the_per_frame_nees() -> None:
    covs = random_covariances(50, seed=0)
    residuals = np.random.default_rng(1).normal(size=(50, 6))
    np.testing.assert_allclose(block_nees(residuals, covs, slice(0, 6)), nees_values(residuals, covs))
    rot = block_nees(residuals, covs, slice(3, 6))
    expected = [r[3:] @ np.linalg.inv(c[3:, 3:]) @ r[3:] for r, c in zip(residuals, covs, strict=True)]
    np.testing.assert_allclose(rot, expected, rtol=1e-9)


def test_coverage_counts_the_truths_inside_each_ellipsoid() -> None:
    nees = chi2.ppf([0.1, 0.3, 0.5, 0.7, 0.9], 6)  # on the boundary counts as inside
    np.testing.assert_allclose(coverage(nees, 6, [0.05, 0.5, 0.95]), [0.0, 0.6, 1.0])


def test_a_consistent_gaussian_covariance_lies_on_the_diagonal_and_a_wide_one_above() -> None:
    covs = random_covariances(1, seed=2).repeat(20000, axis=0)
    residuals = np.random.default_rng(3).multivariate_normal(np.zeros(6), covs[0], size=20000)
    result = consistency(residuals, covs)
    for block, dof in (("6dof", 6), ("position", 3), ("rotation", 3)):
        assert result["mean_nees"][block] == pytest.approx(dof, rel=0.03)
        assert result["inside_95"][block] == pytest.approx(0.95, abs=0.006)
        np.testing.assert_allclose(result["reliability"][block], RELIABILITY_LEVELS, atol=0.015)
    assert result["reliability"]["levels"] == list(RELIABILITY_LEVELS)
    assert len(RELIABILITY_LEVELS) == 19 and RELIABILITY_LEVELS[0] == 0.05 and RELIABILITY_LEVELS[-1] == 0.95
    wide = consistency(residuals, 4.0 * covs)
    assert wide["mean_nees"]["6dof"] == pytest.approx(1.5, rel=0.03)
    assert wide["inside_95"]["6dof"] > 0.999


def test_auroc_known_answers() -> None:
    positives = np.array([False, False, True, True])
    assert auroc(np.array([0.1, 0.2, 0.8, 0.9]), positives) == 1.0  # perfect separation
    assert auroc(np.array([0.9, 0.8, 0.2, 0.1]), positives) == 0.0  # reversed
    assert auroc(np.full(4, 0.3), positives) == 0.5  # all tied
    # 3 of the 4 (positive, negative) pairs are ordered right
    assert auroc(np.array([0.1, 0.4, 0.35, 0.8]), positives) == 0.75
    # one tied pair counts one half: (1 + 0.5 + 1 + 1) / 4
    assert auroc(np.array([0.1, 0.4, 0.4, 0.8]), positives) == 0.875
    assert auroc(np.array([0.1, 0.2]), np.array([False, False])) is None
    assert auroc(np.array([0.1, 0.2]), np.array([True, True])) is None


def test_a_gross_error_is_three_times_either_median() -> None:
    t_err = np.array([1.0, 1.0, 1.0, 3.5, 1.0, 1.0])
    r_err = np.array([2.0, 2.0, 2.0, 2.0, 2.0, 6.5])
    np.testing.assert_array_equal(gross_errors(t_err, r_err), [False, False, False, True, False, True])
    assert not gross_errors(np.full(4, 1.0), np.full(4, 1.0)).any()


def test_flag_rates() -> None:
    flags = np.array([True, False, True, False, False])
    gross = np.array([True, True, False, False, False])
    assert flag_rates(flags, gross) == {
        "true_positive_rate": 0.5,
        "false_positive_rate": pytest.approx(1 / 3),
        "flagged_share": 0.4,
    }
    assert flag_rates(flags, np.zeros(5, dtype=bool))["true_positive_rate"] is None


def diagonal_covariances(position_std: np.ndarray, rotation_std: np.ndarray) -> np.ndarray:
    variances = np.concatenate(
        [np.repeat(position_std[:, None] ** 2, 3, 1), np.repeat(rotation_std[:, None] ** 2, 3, 1)], 1
    )
    return np.stack([np.diag(v) for v in variances])


def test_the_uncertain_flag_catches_the_gross_errors_whose_std_is_high() -> None:
    # Calibration: stds 0.01..1.00 m and 0.001..0.100 rad in step, so the score is std / median.
    steps = np.arange(1, 101) / 100.0
    calibration = diagonal_covariances(steps, steps / 10.0)
    # Test: 18 good frames with small std, 2 gross frames (one in position, one in rotation)
    # that only their own block's std gives away.
    t_err, r_err = np.full(20, 0.1), np.full(20, 2.0)
    t_err[3], r_err[7] = 1.0, 20.0
    pos_std, rot_std = np.full(20, 0.2), np.full(20, 0.02)
    pos_std[3], rot_std[7] = 2.0, 0.2
    report = uncertain_flag_report(diagonal_covariances(pos_std, rot_std), calibration, t_err, r_err)
    assert report["gross_errors"] == 2
    assert report["auroc_uncertain_flag"] == 1.0
    # Either std alone: one gross frame above all 18 good ones, the other tied with them.
    assert report["auroc_position_std"] == report["auroc_rotation_std"] == (18 + 9) / 36
    refs = report["flag_score_references"]
    assert refs == {"position_std_m": pytest.approx(0.505), "rotation_std_rad": pytest.approx(0.0505)}
    k = np.quantile(steps / 0.505, 0.95)  # 5% of the calibration frames flagged
    params = report["suggested_parameters"]
    assert params["max_position_std"] == pytest.approx(k * 0.505)
    assert params["max_rotation_std"] == pytest.approx(k * 0.0505)
    assert report["at_suggested_parameters"] == {
        "true_positive_rate": 1.0,
        "false_positive_rate": 0.0,
        "flagged_share": 0.1,
    }
    assert report["auroc_uncertain_flag_interval_90"] is None  # no sequences given
    # Ten sequences of two frames: a draw without a gross frame has no AUROC and is left out;
    # every other draw separates perfectly.
    sequences = np.repeat(np.arange(10), 2)
    report = uncertain_flag_report(
        diagonal_covariances(pos_std, rot_std), calibration, t_err, r_err, sequences=sequences
    )
    assert report["auroc_uncertain_flag_interval_90"] == (1.0, 1.0)


def diagonal(position_std: np.ndarray, rotation_std: np.ndarray) -> np.ndarray:
    variances = np.concatenate(
        [np.repeat(position_std[:, None] ** 2, 3, 1), np.repeat(rotation_std[:, None] ** 2, 3, 1)], 1
    )
    return np.stack([np.diag(v) for v in variances])


def test_spearman_if_exact_is_zero_for_one_covariance_and_high_for_a_wide_spread() -> None:
    n = 400
    same = diagonal(np.full(n, 0.2), np.full(n, 0.03))
    assert spearman_if_exact(same) == pytest.approx({"position": 0.0, "rotation": 0.0}, abs=0.03)
    # stds spread over two decades: the norm of a 3-D error follows its std closely in rank
    wide = diagonal(np.geomspace(0.01, 1.0, n), np.geomspace(0.001, 0.1, n)[::-1])
    exact = spearman_if_exact(wide)
    assert exact["position"] > 0.85 and exact["rotation"] > 0.85
    # a spread like the default model's (position std 0.2-0.45 m, log-uniform): far below 1
    narrow = diagonal(np.geomspace(0.2, 0.45, n), np.geomspace(0.02, 0.045, n))
    assert 0.2 < spearman_if_exact(narrow)["position"] < 0.5


def test_errors_drawn_from_the_covariances_give_the_same_spearman() -> None:
    n = 2000
    rng = np.random.default_rng(4)
    stds = np.exp(rng.normal(np.log(0.3), 0.5, n))
    covariances = diagonal(stds, stds / 10)
    errors = rng.normal(size=(n, 6)) * np.concatenate(
        [np.repeat(stds[:, None], 3, 1), np.repeat(stds[:, None] / 10, 3, 1)], 1
    )
    ranks = np.argsort(np.argsort(stds)), np.argsort(np.argsort(np.linalg.norm(errors[:, :3], axis=1)))
    measured = np.corrcoef(*ranks)[0, 1]
    assert measured == pytest.approx(spearman_if_exact(covariances, seed=9)["position"], abs=0.04)


FloatArrayT = NDArray[np.float64]
IntArrayT = NDArray[np.int64]


def clustered_frames(
    sequences: int, per_sequence: int, seed: int
) -> tuple[FloatArrayT, FloatArrayT, IntArrayT]:
    """Stds and errors whose frames share a per-sequence factor the std does not see, as frames of
    one trajectory share their view of the scene."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(sequences), per_sequence)
    scene = np.exp(rng.normal(0.0, 0.5, sequences))[labels]  # what the std knows about
    unseen = np.exp(rng.normal(0.0, 0.5, sequences))[labels]  # what it does not
    std = scene * np.exp(rng.normal(0.0, 0.2, labels.size))
    error = std * unseen * np.exp(rng.normal(0.0, 0.3, labels.size))
    return std, error, labels


def test_spearman_interval_covers_the_population_value_about_as_often_as_it_says() -> None:
    population = _rank_correlation(*clustered_frames(20_000, 10, seed=1)[:2])
    covered = 0
    trials = 40
    for trial in range(trials):
        std, error, labels = clustered_frames(30, 10, seed=100 + trial)
        interval = spearman_interval(std, error, labels, level=0.9, draws=300, seed=trial)
        assert interval is not None
        low, high = interval
        covered += low <= population <= high
    assert 0.75 * trials <= covered <= trials


def test_spearman_interval_is_wider_over_sequences_than_over_frames_of_clustered_data() -> None:
    std, error, labels = clustered_frames(40, 20, seed=3)
    point = _rank_correlation(std, error)
    by_sequence = spearman_interval(std, error, labels, draws=400)
    by_frame = spearman_interval(std, error, np.arange(labels.size), draws=400)
    assert by_sequence is not None and by_frame is not None
    (low, high), (frame_low, frame_high) = by_sequence, by_frame
    assert low < point < high and frame_low < point < frame_high
    # resampling frames would pretend to 800 independent frames; there are 40 sequences
    assert high - low > 2.0 * (frame_high - frame_low)


def test_spearman_interval_needs_two_sequences() -> None:
    assert spearman_interval(np.arange(5.0), np.arange(5.0), np.zeros(5, dtype=np.int64)) is None


def _rank_correlation(a: FloatArrayT, b: FloatArrayT) -> float:
    return float(np.corrcoef(np.argsort(np.argsort(a)), np.argsort(np.argsort(b)))[0, 1])


def test_sequence_bootstrap_leaves_out_undefined_draws_and_gives_none_when_none_is_defined() -> None:
    sequences = np.arange(4)
    assert sequence_bootstrap_interval(lambda rows: None, sequences) is None
    interval = sequence_bootstrap_interval(lambda rows: float(len(set(rows.tolist()))), sequences, draws=200)
    assert interval is not None
    low, high = interval
    assert 1.0 <= low <= high <= 4.0  # distinct sequences in a draw of four with replacement


def test_published_uncertainty_scores_the_flag_at_the_thresholds_in_force() -> None:
    # 20 frames whose stds rise with their errors; frames 18 and 19 are gross (position and
    # rotation) and only they lie above the thresholds 0.5 m and 0.05 rad.
    t_err, r_err = np.linspace(0.1, 0.2, 20), np.linspace(1.0, 2.0, 20)
    t_err[18], r_err[19] = 1.0, 20.0
    pos_std, rot_std = np.linspace(0.1, 0.3, 20), np.linspace(0.01, 0.03, 20)
    pos_std[18], rot_std[19] = 0.9, 0.09
    covariances = diagonal_covariances(pos_std, rot_std)
    residuals = np.concatenate(  # each block's residual along x at its std: NEES 1 per block
        [pos_std[:, None] * [1.0, 0.0, 0.0], rot_std[:, None] * [1.0, 0.0, 0.0]], axis=1
    )
    report = published_uncertainty(t_err, r_err, residuals, covariances, 0.5, 0.05)
    assert report["spearman_position_std_vs_error"] == pytest.approx(1.0)
    assert report["spearman_rotation_std_vs_error"] == pytest.approx(1.0)
    assert report["mean_nees_blocks"] == pytest.approx({"6dof": 2.0, "position": 1.0, "rotation": 1.0})
    assert report["inside_95_ellipsoid"] == {"6dof": 1.0, "position": 1.0, "rotation": 1.0}
    flag = report["uncertain_flag"]
    assert (flag["gross_errors"], flag["flagged"], flag["auroc_uncertain_flag"]) == (2, 2, 1.0)
    assert flag["thresholds"] == {"max_position_std": 0.5, "max_rotation_std": 0.05}
    assert flag["at_thresholds"] == {
        "true_positive_rate": 1.0,
        "false_positive_rate": 0.0,
        "flagged_share": 0.1,
    }
    # A threshold of infinity (the flag off for that block) leaves the other block's flag.
    report = published_uncertainty(t_err, r_err, residuals, covariances, float("inf"), 0.05)
    assert report["uncertain_flag"]["flagged"] == 1
    assert report["uncertain_flag"]["at_thresholds"]["true_positive_rate"] == 0.5


def test_spearman_known_answers_and_nan_when_a_side_is_constant() -> None:
    assert spearman(np.array([1.0, 2.0, 3.0, 4.0]), np.array([10.0, 20.0, 25.0, 100.0])) == pytest.approx(1.0)
    assert spearman(np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 1.0])) == pytest.approx(-1.0)
    assert spearman(np.array([1.0, 1.0, 2.0]), np.array([1.0, 2.0, 3.0])) == pytest.approx(np.sqrt(3) / 2)
    assert np.isnan(spearman(np.ones(3), np.arange(3.0)))
    assert np.isnan(spearman(np.ones(1), np.ones(1)))


def test_operating_points_say_what_each_share_of_flagged_frames_catches() -> None:
    # 100 frames whose position stds rise 0.01..1.00 x the threshold; the top 10 are the gross ones.
    pos_std = np.arange(1, 101) / 100.0 * 0.4
    rot_std = np.full(100, 0.001)
    gross = np.arange(100) >= 90
    points = operating_points(pos_std, rot_std, gross, 0.4, 0.05, shares=(0.05, 0.2))
    five, twenty = points
    assert five["share"] == 0.05 and five["threshold_scale"] == pytest.approx(0.9505)
    assert five["max_position_std"] == pytest.approx(0.9505 * 0.4)
    assert five["max_rotation_std"] == pytest.approx(0.9505 * 0.05)
    assert (five["true_positive_rate"], five["false_positive_rate"], five["flagged_share"]) == (
        0.5,
        0.0,
        0.05,
    )
    assert twenty["true_positive_rate"] == 1.0 and twenty["false_positive_rate"] == pytest.approx(10 / 90)
    assert twenty["flagged_share"] == 0.2
    # the published report carries them at the default shares
    report = published_uncertainty(
        np.where(gross, 1.0, 0.1),
        np.ones(100),
        np.zeros((100, 6)),
        diagonal_covariances(pos_std, rot_std),
        0.4,
        0.05,
    )
    shares = [point["share"] for point in report["uncertain_flag"]["operating_points"]]
    assert shares == [0.01, 0.02, 0.05, 0.10, 0.20]
