"""AUROC and the uncertain-flag scores of the unfamiliar-views experiment, on known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pose_regressor_training.ood import auroc, share_caught, uncertain_flags


@pytest.mark.parametrize(
    ("negative", "positive", "expected"),
    [
        ([1, 2, 3], [4, 5], 1.0),  # perfectly separated
        ([4, 5], [1, 2, 3], 0.0),  # perfectly inverted
        ([1, 2, 3], [1, 2, 3], 0.5),  # identical: every pair a tie or balanced
        ([0.1, 0.4, 0.35, 0.8], [0.9, 0.35, 0.8], 0.75),  # two ties count half: (4 + 1.5 + 3.5) / 12
        ([1.0], [1.0], 0.5),
        ([1, 3], [2], 0.5),
    ],
)
def test_auroc_known_answers(negative: list[float], positive: list[float], expected: float) -> None:
    assert auroc(negative, positive) == pytest.approx(expected)


def test_auroc_equals_the_pairwise_definition() -> None:
    rng = np.random.default_rng(0)
    neg, pos = rng.integers(0, 10, 40).astype(float), rng.integers(3, 13, 30).astype(float)
    pairs = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    assert auroc(neg, pos) == pytest.approx(pairs.mean())


def test_auroc_of_an_empty_group_is_nan() -> None:
    assert math.isnan(auroc([], [1.0])) and math.isnan(auroc([1.0], []))


def test_flags_and_the_share_of_gross_errors_caught() -> None:
    flags = uncertain_flags(np.array([0.1, 0.6, 0.2, 0.3]), np.array([1.0, 1.0, 9.0, 2.0]), 0.5, 5.0)
    np.testing.assert_array_equal(flags, [False, True, True, False])
    assert share_caught(flags, np.array([False, True, False, True])) == 0.5
    assert math.isnan(share_caught(flags, np.zeros(4, bool)))
