"""Scores for unfamiliar views: does the predicted std separate them, and does the uncertain flag
catch the gross errors?"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pose_regressor.uncertainty_metrics import auroc as separation_auroc


def auroc(scores_negative: ArrayLike, scores_positive: ArrayLike) -> float:
    """`pose_regressor.uncertainty_metrics.auroc` for two groups of scores (in- and out-of-distribution
    frames): the probability that a positive scores above a negative, ties counted half. NaN when
    either group is empty."""
    neg = np.asarray(scores_negative, dtype=np.float64).ravel()
    pos = np.asarray(scores_positive, dtype=np.float64).ravel()
    labels = np.concatenate([np.ones(len(pos), dtype=bool), np.zeros(len(neg), dtype=bool)])
    area = separation_auroc(np.concatenate([pos, neg]), labels)
    return float("nan") if area is None else area


def uncertain_flags(
    position_std: NDArray[np.float64],
    rotation_std: NDArray[np.float64],
    max_position_std: float,
    max_rotation_std: float,
) -> NDArray[np.bool_]:
    """The node's flag (`gate_uncertain` withholds these): either std above its threshold."""
    flags: NDArray[np.bool_] = (np.asarray(position_std) > max_position_std) | (
        np.asarray(rotation_std) > max_rotation_std
    )
    return flags


def share_caught(flags: NDArray[np.bool_], gross: NDArray[np.bool_]) -> float:
    """The share of gross errors that are flagged (recall); NaN without gross errors."""
    gross = np.asarray(gross, dtype=bool)
    if not gross.any():
        return float("nan")
    return float(np.asarray(flags, dtype=bool)[gross].mean())
