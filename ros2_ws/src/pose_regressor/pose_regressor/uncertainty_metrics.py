"""Whether a predicted pose covariance can be trusted: consistency (NEES, coverage of the
confidence ellipsoids), ranking (do larger stds go with larger errors) and separation (does the
node's "uncertain" flag catch the gross errors).

Numpy and scipy only, so every evaluation (`pose-train eval-checkpoint`, `pose-regressor
eval-folder` and `eval-node`) shares the definitions. Residuals are the 6-vectors of
`uncertainty.tangent_residual` (x, y, z in metres, then a rotation vector in radians); covariances
are 6x6 in the same order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.stats import chi2, rankdata

from pose_regressor.limits import DEFAULT_FLAG_SHARE

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

#: The blocks of the 6-vector that are checked on their own as well as together.
BLOCKS: dict[str, slice] = {"6dof": slice(0, 6), "position": slice(0, 3), "rotation": slice(3, 6)}

#: Confidence levels of the reliability diagram (0.05, 0.10, ..., 0.95).
RELIABILITY_LEVELS: tuple[float, ...] = tuple(round(0.05 * k, 2) for k in range(1, 20))

#: The shares of frames flagged at which `operating_points` reports what the flag catches.
FLAG_OPERATING_SHARES = (0.01, 0.02, 0.05, 0.10, 0.20)

#: A frame's error is gross when its translation or its rotation error exceeds this many times the
#: split's median of that error.
GROSS_ERROR_FACTOR = 3.0
GROSS_ERROR_RULE = (
    f"translation error > {GROSS_ERROR_FACTOR:g}x median or rotation error > {GROSS_ERROR_FACTOR:g}x median"
)


def block_nees(residuals: FloatArray, covariances: FloatArray, block: slice) -> FloatArray:
    """Per-frame NEES r_b^T C_bb^-1 r_b of one block of residuals [N, 6] under covariances [N, 6, 6]
    (expected value: the block's dimension)."""
    r = residuals[:, block]
    c = covariances[:, block, block]
    solved = np.linalg.solve(c, r[:, :, None])[:, :, 0]
    return np.asarray(np.einsum("ni,ni->n", r, solved), dtype=np.float64)


def coverage(nees: FloatArray, dof: int, levels: tuple[float, ...] | list[float]) -> FloatArray:
    """For each confidence level, the share of frames whose truth lies inside that level's
    ellipsoid (NEES <= chi2.ppf(level, dof)); a consistent Gaussian covariance gives the level."""
    bounds = chi2.ppf(np.asarray(levels, dtype=np.float64), dof)
    return np.asarray(np.mean(np.asarray(nees)[:, None] <= bounds[None, :], axis=0), dtype=np.float64)


def consistency(residuals: FloatArray, covariances: FloatArray) -> dict[str, Any]:
    """Mean NEES, share inside the 95% ellipsoid and the reliability curve (observed coverage at
    `RELIABILITY_LEVELS`), for the whole pose and for each block."""
    mean_nees: dict[str, float] = {}
    inside_95: dict[str, float] = {}
    reliability: dict[str, Any] = {"levels": list(RELIABILITY_LEVELS)}
    for name, block in BLOCKS.items():
        dof = block.stop - block.start
        nees = block_nees(residuals, covariances, block)
        mean_nees[name] = float(np.mean(nees))
        inside_95[name] = float(coverage(nees, dof, [0.95])[0])
        reliability[name] = [float(c) for c in coverage(nees, dof, RELIABILITY_LEVELS)]
    return {"mean_nees": mean_nees, "inside_95": inside_95, "reliability": reliability}


def auroc(scores: FloatArray, positives: BoolArray) -> float | None:
    """Area under the ROC curve of `scores` for separating `positives` from the other frames: the
    probability that a random positive scores above a random negative, ties counting one half
    (Mann-Whitney rank formula). None when either class is empty."""
    scores = np.asarray(scores, dtype=np.float64)
    positives = np.asarray(positives, dtype=bool)
    n_pos = int(positives.sum())
    n_neg = len(positives) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(scores)  # average ranks: ties share the mean of their positions
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def gross_errors(t_err: FloatArray, r_err: FloatArray, factor: float = GROSS_ERROR_FACTOR) -> BoolArray:
    """Frames whose translation error exceeds `factor` x the median translation error, or whose
    rotation error exceeds `factor` x the median rotation error."""
    return (t_err > factor * np.median(t_err)) | (r_err > factor * np.median(r_err))


def flag_rates(flags: BoolArray, positives: BoolArray) -> dict[str, float | None]:
    """True-positive rate (share of `positives` flagged) and false-positive rate (share of the
    others flagged); None for a rate whose class is empty."""
    flags, positives = np.asarray(flags, dtype=bool), np.asarray(positives, dtype=bool)
    return {
        "true_positive_rate": float(flags[positives].mean()) if positives.any() else None,
        "false_positive_rate": float(flags[~positives].mean()) if (~positives).any() else None,
        "flagged_share": float(flags.mean()),
    }


def node_stds(covariances: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Per-frame (position std m, rotation std rad) of covariances [N, 6, 6], as the node compares
    them with max_position_std / max_rotation_std (`PoseEstimate.position_std` / `rotation_std`)."""
    pos = np.sqrt(np.trace(covariances[:, :3, :3], axis1=1, axis2=2) / 3.0)
    rot = np.sqrt(np.trace(covariances[:, 3:, 3:], axis1=1, axis2=2) / 3.0)
    return pos, rot


def flag_scores(
    position_std: FloatArray, rotation_std: FloatArray, position_ref: float, rotation_ref: float
) -> FloatArray:
    """max(position_std / position_ref, rotation_std / rotation_ref): the node's flag with
    max_position_std = k * position_ref and max_rotation_std = k * rotation_ref is exactly
    score > k, so ranking by this score ranks the flag over every k."""
    return np.maximum(np.asarray(position_std) / position_ref, np.asarray(rotation_std) / rotation_ref)


def operating_points(
    position_std: FloatArray,
    rotation_std: FloatArray,
    gross: BoolArray,
    max_position_std: float,
    max_rotation_std: float,
    shares: tuple[float, ...] = FLAG_OPERATING_SHARES,
) -> list[dict[str, float | None]]:
    """What the flag catches when both thresholds are scaled together from (`max_position_std`,
    `max_rotation_std`) until they flag each of `shares` of these frames: the scale, the
    thresholds it gives, and the rates of `flag_rates` there. A robot chooses its operating point
    from this: how many good poses it gives up for how many of the gross errors."""
    scores = flag_scores(position_std, rotation_std, max_position_std, max_rotation_std)
    points: list[dict[str, float | None]] = []
    for share in shares:
        scale = float(np.quantile(scores, 1.0 - share))
        points.append(
            {
                "share": share,
                "threshold_scale": scale,
                "max_position_std": scale * max_position_std,
                "max_rotation_std": scale * max_rotation_std,
                **flag_rates(scores > scale, gross),
            }
        )
    return points


def uncertain_flag_report(
    test_covariances: FloatArray,
    calibration_covariances: FloatArray,
    t_err: FloatArray,
    r_err: FloatArray,
    flagged_quantile: float = 1.0 - DEFAULT_FLAG_SHARE,
    sequences: NDArray[np.int64] | None = None,
) -> dict[str, Any]:
    """How well the node's "uncertain" flag catches the gross errors of the test frames.

    Both covariance stacks are calibrated (what the node publishes). The score is `flag_scores`
    with the calibration split's median stds as references; the suggested node parameters flag
    the `flagged_quantile` quantile of the calibration split's scores (5% of its frames flagged
    at 0.95), and the flag's rates on the test frames are reported at those parameters. With the
    test frames' `sequences`, the AUROC's 90% interval over them is reported too.
    """
    cal_pos, cal_rot = node_stds(calibration_covariances)
    pos_ref, rot_ref = float(np.median(cal_pos)), float(np.median(cal_rot))
    k = float(np.quantile(flag_scores(cal_pos, cal_rot, pos_ref, rot_ref), flagged_quantile))
    suggested = {"max_position_std": k * pos_ref, "max_rotation_std": k * rot_ref}
    pos, rot = node_stds(test_covariances)
    gross = gross_errors(t_err, r_err)
    flags = (pos > suggested["max_position_std"]) | (rot > suggested["max_rotation_std"])
    scores = flag_scores(pos, rot, pos_ref, rot_ref)
    interval = (
        None
        if sequences is None
        else sequence_bootstrap_interval(lambda rows: auroc(scores[rows], gross[rows]), sequences)
    )
    return {
        "gross_error_rule": GROSS_ERROR_RULE,
        "gross_errors": int(gross.sum()),
        "auroc_uncertain_flag": auroc(scores, gross),
        "auroc_uncertain_flag_interval_90": interval,
        "auroc_position_std": auroc(pos, gross),
        "auroc_rotation_std": auroc(rot, gross),
        "flag_score_references": {"position_std_m": pos_ref, "rotation_std_rad": rot_ref},
        "suggested_parameters": suggested,
        "suggested_from_quantile": flagged_quantile,
        "at_suggested_parameters": flag_rates(flags, gross),
        "operating_points": operating_points(
            pos, rot, gross, suggested["max_position_std"], suggested["max_rotation_std"]
        ),
    }


def published_uncertainty(
    t_err: FloatArray,
    r_err: FloatArray,
    residuals: FloatArray,
    covariances: FloatArray,
    max_position_std: float,
    max_rotation_std: float,
) -> dict[str, Any]:
    """The uncertainty of poses as a robot receives them: `covariances` [N, 6, 6] already
    calibrated (what the node publishes), `residuals` [N, 6] from each estimate to the truth, and
    the node's "uncertain" flag at the thresholds in force (m, rad). The keys are those of
    `pose-train eval-checkpoint` (`uncertain_flag.at_thresholds` in place of its suggested ones),
    so `eval-folder` and `eval-node` answer the same questions on the exported bundle."""
    pos, rot = node_stds(covariances)
    check = consistency(residuals, covariances)
    gross = gross_errors(t_err, r_err)
    flags = (pos > max_position_std) | (rot > max_rotation_std)
    scores = flag_scores(pos, rot, max_position_std, max_rotation_std)
    return {
        "spearman_position_std_vs_error": spearman(pos, t_err),
        "spearman_rotation_std_vs_error": spearman(rot, r_err),
        "mean_nees_blocks": check["mean_nees"],
        "inside_95_ellipsoid": check["inside_95"],
        "reliability": check["reliability"],
        "uncertain_flag": {
            "gross_error_rule": GROSS_ERROR_RULE,
            "gross_errors": int(gross.sum()),
            "auroc_uncertain_flag": auroc(scores, gross),
            "thresholds": {"max_position_std": max_position_std, "max_rotation_std": max_rotation_std},
            "at_thresholds": flag_rates(flags, gross),
            "flagged": int(flags.sum()),
            "operating_points": operating_points(pos, rot, gross, max_position_std, max_rotation_std),
        },
    }


def spearman_if_exact(covariances: FloatArray, draws: int = 32, seed: int = 0) -> dict[str, float]:
    """The Spearman(std, error) that `covariances` [N, 6, 6] would reach if they were exactly right:
    errors drawn from N(0, Σ_i) for every frame, their position and rotation norms ranked against
    the stds of `node_stds`, averaged over `draws` (seeded).

    It measures how much the predicted uncertainty varies from frame to frame, not whether it is
    right: a covariance that is the same for every frame gets 0 however exact it is. Read the
    measured Spearman against it: below it, the stds rank the errors worse than they claim to;
    above it, the errors vary more between frames than the stds do (the stds are too uniform, and
    the ellipsoids too wide for the typical frame and too narrow for the bad ones).
    """
    n = len(covariances)
    if n < 2:
        return {"position": float("nan"), "rotation": float("nan")}
    # a tiny jitter: a covariance with a zero variance (a floor of 0) is still drawable
    chol = np.linalg.cholesky(covariances + 1e-15 * np.eye(6))
    pos_std, rot_std = node_stds(covariances)
    rng = np.random.default_rng(seed)
    position, rotation = [], []
    for _ in range(draws):
        errors = (chol @ rng.standard_normal((n, 6, 1)))[..., 0]
        position.append(_spearman_or_zero(pos_std, np.linalg.norm(errors[:, :3], axis=1)))
        rotation.append(_spearman_or_zero(rot_std, np.linalg.norm(errors[:, 3:], axis=1)))
    return {"position": float(np.mean(position)), "rotation": float(np.mean(rotation))}


def sequence_bootstrap_interval(
    statistic: Callable[[NDArray[np.int64]], float | None],
    sequences: NDArray[np.int64],
    level: float = 0.9,
    draws: int = 1000,
    seed: int = 0,
) -> tuple[float, float] | None:
    """A `level` interval of `statistic(rows)` from a bootstrap over whole sequences (seeded).

    Frames of one trajectory share their view of the scene, so their errors are not independent:
    1,600 test frames of 80 trajectories carry about 80 frames' worth of evidence. Resampling
    sequences, not frames, keeps that, and says how far a split's value could move on another
    draw of trajectories. Draws where `statistic` is undefined (None) are left out; None with
    fewer than two sequences or no defined draw (so that metrics.json holds no NaN)."""
    labels, members = np.unique(sequences, return_inverse=True)
    if len(labels) < 2:
        return None
    by_sequence = [np.flatnonzero(members == k) for k in range(len(labels))]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(draws):
        chosen = rng.integers(0, len(labels), len(labels))
        value = statistic(np.concatenate([by_sequence[k] for k in chosen]))
        if value is not None:
            values.append(value)
    if not values:
        return None
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return float(low), float(high)


def spearman_interval(
    std: FloatArray,
    error: FloatArray,
    sequences: NDArray[np.int64],
    level: float = 0.9,
    draws: int = 1000,
    seed: int = 0,
) -> tuple[float, float] | None:
    """A `level` interval of Spearman(std, error) over whole sequences (`sequence_bootstrap_interval`)."""

    def spearman_of(rows: NDArray[np.int64]) -> float:
        return _spearman_or_zero(std[rows], error[rows])

    return sequence_bootstrap_interval(spearman_of, sequences, level, draws, seed)


def spearman(a: FloatArray, b: FloatArray) -> float:
    """Spearman's rank correlation (average ranks for ties); nan when either side is constant or
    there are fewer than two values."""
    ra, rb = rankdata(a), rankdata(b)
    if len(ra) < 2 or np.ptp(ra) == 0 or np.ptp(rb) == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def _spearman_or_zero(a: FloatArray, b: FloatArray) -> float:
    """`spearman`, 0 where a side is constant: stds that are the same for every frame rank nothing."""
    value = spearman(a, b)
    return 0.0 if np.isnan(value) else value
