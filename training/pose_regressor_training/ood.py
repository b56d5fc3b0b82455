"""Scores for unfamiliar views: does the predicted std separate them, and does the uncertain flag
catch the gross errors?"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import rankdata


def auroc(scores_negative: ArrayLike, scores_positive: ArrayLike) -> float:
    """Area under the ROC curve of `score` as a detector of the positives: the probability that a
    random positive scores higher than a random negative, ties counted half (Mann-Whitney U).

    NaN when either group is empty.
    """
    neg = np.asarray(scores_negative, dtype=np.float64).ravel()
    pos = np.asarray(scores_positive, dtype=np.float64).ravel()
    if len(neg) == 0 or len(pos) == 0:
        return float("nan")
    ranks = rankdata(np.concatenate([pos, neg]))  # average ranks: a tie counts half either way
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2.0
    return float(u / (len(pos) * len(neg)))


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
