"""Fitting a model's covariance calibration (`CovarianceScale`) to held-out errors, per axis group.

Two numbers per group (position, rotation): an exponent, which sets how fast the calibrated std
grows with the raw one, fitted by Gaussian likelihood; then a scale, which matches a high
quantile of the NEES to chi-square's. The exponent comes first because the scale depends on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize_scalar
from scipy.stats import chi2

from pose_regressor.bundle import YAML_FILE, BundleError, parse_covariance_scale
from pose_regressor.files import read_yaml
from pose_regressor.metrics import nees_values
from pose_regressor.uncertainty import MIN_COVARIANCE_EXPONENT, CovarianceScale, block_std, exponent_factor
from pose_regressor_training.errors import TrainingError

FloatArray = NDArray[np.float64]

# Which NEES quantile calibration matches to chi-square's. Matching the median left the tails too
# narrow (default model, test split: 80.6% of the truths inside the 95% ellipsoid, mean NEES 8.7);
# the 90th percentile gives 92.4% and 5.0 there, and still ignores up to 10% of gross errors.
CALIBRATION_QUANTILE = 0.9

# The exponent is fitted only on this many frames or more: on the 5-40 validation frames of the
# real photo sets it ran to either end of its range (docs/results.md, "A covariance that grows
# faster than the std"). Fewer frames keep the plain scale (exponent 1).
MIN_FRAMES_FOR_EXPONENT = 200
# The fitted range: validation sets of the default recipe pick 2.0-2.8; 3 keeps an exponent fitted
# on a few hundred frames from making the covariance of a frame whose raw std doubles 2^6 = 64x
# larger. MIN_COVARIANCE_EXPONENT (1) is the contract's floor.
MAX_FITTED_EXPONENT = 3.0


def fit_covariance_scale(
    residuals: FloatArray, covariances: FloatArray, quantile: float = CALIBRATION_QUANTILE
) -> float:
    """The scale s that makes the `quantile` quantile of the NEES of (residual, s * covariance)
    equal that of a chi-square distribution with as many degrees of freedom as the residual has
    (what consistent Gaussian errors give). NEES is linear in 1 / s, so s = NEES quantile /
    chi2 quantile exactly.

    A quantile, not the mean: a few gross errors with small predicted spread (a view mistaken for
    another place) would otherwise inflate every covariance. Not the median either: errors with
    heavier tails than a Gaussian's then fall outside the ellipsoids far more often than they
    should (see CALIBRATION_QUANTILE); the mean NEES after calibration is reported too.
    """
    dof = residuals.shape[1]
    return float(np.quantile(nees_values(residuals, covariances), quantile) / chi2.ppf(quantile, dof))


def shaped(covariances: FloatArray, exponent: float, reference: float) -> FloatArray:
    """The blocks (N, 3, 3) multiplied by what `exponent` adds to their group's scale."""
    return np.asarray(covariances * exponent_factor(covariances, exponent, reference)[:, None, None])


def profile_log_likelihood(residuals: FloatArray, covariances: FloatArray) -> float:
    """Gaussian log-likelihood of the residuals (N, d) under s * covariances, at the best s
    (mean NEES / d, in closed form), without the constant: -N d (1 + ln s) / 2 - sum ln det C / 2."""
    n, dof = residuals.shape
    best_scale = float(np.mean(nees_values(residuals, covariances))) / dof
    _, log_det = np.linalg.slogdet(covariances)
    return float(-0.5 * (n * dof * (1.0 + np.log(best_scale)) + np.sum(log_det)))


def fit_covariance_exponent(residuals: FloatArray, covariances: FloatArray) -> tuple[float, float]:
    """(exponent, reference std) of one axis group: the exponent in [1, MAX_FITTED_EXPONENT] under
    which the residuals (N, 3) are most likely, the reference the median block size. 1 (a plain
    scale) with fewer than MIN_FRAMES_FOR_EXPONENT frames or blocks all of one size."""
    sizes = block_std(covariances)
    reference = float(np.median(sizes))
    if len(residuals) < MIN_FRAMES_FOR_EXPONENT or not reference > 0 or sizes.min() <= 0:
        return 1.0, 1.0
    if sizes.max() / sizes.min() < 1.001:  # every factor alike: the exponent changes nothing
        return 1.0, 1.0
    result = minimize_scalar(
        lambda g: -profile_log_likelihood(residuals, shaped(covariances, g, reference)),
        bounds=(MIN_COVARIANCE_EXPONENT, MAX_FITTED_EXPONENT),
        method="bounded",
        options={"xatol": 1e-3},
    )
    return float(result.x), reference


def fit_covariance_scales(
    residuals: FloatArray, covariances: FloatArray, exponents: bool = True
) -> CovarianceScale:
    """The calibration of each axis group, fitted on residuals (N, 6) and raw covariances (N, 6, 6).

    Per group because position and rotation errors of a pose regressor are miscalibrated by
    different factors (metres and radians, different heads of the same layer), which one scalar
    cannot fix. The position scale matches the NEES of the position block (3-D, against chi2(3)),
    the rotation scale that of the rotation block. With `exponents` each group's exponent is
    fitted first (`fit_covariance_exponent`): the errors of the default model spread more between
    frames than its stds, and most where it is unsure (an unfamiliar view, a place it never
    trained on), so a std that grows faster than the raw one keeps more truths inside the ellipsoid
    there and as many on familiar views."""
    fields: dict[str, float] = {}
    for name, block in (("position", slice(0, 3)), ("rotation", slice(3, 6))):
        r, c = residuals[:, block], covariances[:, block, block]
        exponent, reference = fit_covariance_exponent(r, c) if exponents else (1.0, 1.0)
        fields[name] = fit_covariance_scale(r, shaped(c, exponent, reference) if exponent != 1.0 else c)
        fields[f"{name}_exponent"], fields[f"{name}_reference_std"] = exponent, reference
    return CovarianceScale(**fields)


# Folds of `held_out_consistency`: enough that each fit keeps most stretches, few enough that the
# check stays a second on the 80 trajectories of a synthetic val split.
HELD_OUT_FOLDS = 10


def calibration_split_names(text: str | None) -> tuple[str, ...]:
    """The splits of `--calib-split` ("val", "val,test"), in order and once each; () for "" or None
    (the evaluated split itself)."""
    names = [name.strip() for name in (text or "").split(",")]
    return tuple(dict.fromkeys(name for name in names if name))


def held_out_consistency(
    residuals: FloatArray, covariances: FloatArray, blocks: NDArray[np.int64], folds: int = HELD_OUT_FOLDS
) -> dict[str, Any] | None:
    """How the calibration `fit_covariance_scales` gives these frames holds on stretches it was not
    fitted on, the way it must hold on the robot: the blocks (trajectories, an import's blocks) are
    dealt in turn into min(`folds`, blocks) folds, and each fold is scored under the calibration
    fitted on the other folds. Pooled mean NEES (6-DoF, ideal 6) and share inside the 95% ellipsoid,
    and each fold's mean NEES. None with fewer than 2 blocks: nothing to hold out.

    The calibration's own NEES on the frames it was fitted on says little on a small set: a 90th
    percentile matched on 25 frames of one stretch holds there by construction, and its mean NEES on
    the next stretches of real photographs was up to 13x chi2's (docs/results.md, "Calibrating on
    more stretches")."""
    ids = np.unique(blocks)
    if len(ids) < 2:
        return None
    count = min(folds, len(ids))
    fold_of = np.searchsorted(ids, blocks) % count  # block i (in id order) goes to fold i mod count
    nees = np.empty(len(residuals))
    for fold in range(count):
        held = fold_of == fold
        scale = fit_covariance_scales(residuals[~held], covariances[~held])
        nees[held] = nees_values(residuals[held], scale.apply(covariances[held]))
    per_fold = [float(np.mean(nees[fold_of == fold])) for fold in range(count)]
    return {
        "blocks": len(ids),
        "folds": count,
        "mean_nees": float(np.mean(nees)),
        "inside_95": float(np.mean(nees <= chi2.ppf(0.95, residuals.shape[1]))),
        "mean_nees_per_fold": per_fold,
    }


def load_calibration(path: Path) -> CovarianceScale:
    """The `covariance_scale` of a `pose-train eval-checkpoint` metrics.json, of a bundle.yaml or of
    a bundle directory (TrainingError, one line naming the file, when there is none or it is bad)."""
    file = path / YAML_FILE if path.is_dir() else path
    data = read_yaml(file, "calibration file", TrainingError)
    if not isinstance(data, dict) or "covariance_scale" not in data:
        raise TrainingError(
            f"calibration file {file} has no covariance_scale (want an eval-checkpoint metrics.json "
            "evaluated with --mc-samples >= 2, a bundle.yaml or a bundle directory)"
        )
    try:
        return parse_covariance_scale(data["covariance_scale"])
    except BundleError as exc:
        raise TrainingError(f"calibration file {file}: {exc}") from None
