"""best.pt's score is unit-free: an SfM model's arbitrary scale does not change which epoch is best."""

from __future__ import annotations

import numpy as np

from pose_regressor_training.trainer import position_spread, selection_score


def best_epoch(errors: list[tuple[float, float]], positions: np.ndarray) -> int:
    spread = position_spread(positions)
    metrics = [{"median_translation_m": t, "median_rotation_deg": r} for t, r in errors]
    scores = [selection_score(m, spread) for m in metrics]
    return int(np.argmin(scores)) + 1


def test_scaling_the_positions_by_10_picks_the_same_best_epoch() -> None:
    positions = np.random.default_rng(0).normal(size=(50, 3))
    # metres + degrees / 10 picks epoch 1 here (0.7 < 0.8) but epoch 2 once every length is 10x (5.2 > 2.6)
    errors = [(0.5, 2.0), (0.2, 6.0), (0.9, 1.0)]
    scaled = [(10 * t, r) for t, r in errors]
    assert best_epoch(errors, positions) == best_epoch(scaled, 10 * positions)
    assert np.isclose(position_spread(10 * positions), 10 * position_spread(positions))


def test_the_spread_is_the_rms_distance_from_the_mean_and_never_zero() -> None:
    square = np.array([[1.0, 1.0, 5.0], [-1.0, 1.0, 5.0], [-1.0, -1.0, 5.0], [1.0, -1.0, 5.0]])
    assert np.isclose(position_spread(square), np.sqrt(2.0))
    assert position_spread(square[:1]) == 1.0 and position_spread(np.zeros((0, 3))) == 1.0
