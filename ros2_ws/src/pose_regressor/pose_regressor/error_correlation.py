"""How long the localizer's errors stay alike along a trajectory, and what that asks of an EKF.

A pose regressor errs by a bias that belongs to the view: successive poses of a moving camera see
nearly the same images and are off by nearly the same amount. Each pose's covariance can be
calibrated (mean NEES 6) and still mislead a Kalman filter that fuses every pose, because the
filter takes N poses for N independent measurements and shrinks its covariance by N where the
error shrinks far less. The remedy the numbers here support is to inflate the covariance the filter
receives by the integrated autocorrelation time of the errors, tau = 1 + 2 sum_l rho(l): N poses
that are alike over tau frames carry the information of N / tau independent ones.

rho is measured on the whitened residuals z = C^-1/2 r (C, each frame's own covariance), so
that a frame with a large predicted covariance does not weigh more, pooled over the trajectories
(`sequence`) and the six axes, and not centred: the shared bias is what is being measured. The sum
runs over the lags before rho first falls to 0 or below (the initial positive sequence); when the
trajectories end first, `truncated` says that tau is a lower bound.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from pose_regressor.metrics import trajectory_pieces

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

#: Lags beyond this are not summed (100 frames: 10 s at 10 Hz, 3.3 s at 30 Hz).
MAX_LAG = 100


def whitened(residuals: FloatArray, covariances: FloatArray) -> FloatArray:
    """z = C^-1/2 r per frame (the symmetric root): unit covariance where the covariance is right.
    Not a Cholesky factor: that one turns with the frame's correlations and would mix the axes of
    successive frames differently, hiding a shared error."""
    values, vectors = np.linalg.eigh(covariances)
    # a covariance rounded to singular (a huge and a tiny axis) must not give inf or nan
    rotated = np.einsum("nji,nj->ni", vectors, residuals) / np.sqrt(np.maximum(values, 1e-300))
    return np.asarray(np.einsum("nij,nj->ni", vectors, rotated), dtype=np.float64)


def autocorrelation(z: FloatArray, sequences: IntArray, max_lag: int = MAX_LAG) -> FloatArray:
    """rho(0..L) of the rows of `z` [N, d] (frames in time order within each sequence), pooled over
    the sequences and the d axes: mean over frame pairs l apart of z_t . z_t+l, over its value at
    lag 0. Lags no sequence is long enough for are left out (L < max_lag)."""
    runs = [z[sequences == s] for s in np.unique(sequences)]
    longest = max(len(run) for run in runs)
    products: list[float] = []
    for lag in range(min(max_lag, longest - 1) + 1):
        pairs = [np.einsum("ij,ij->i", run[: len(run) - lag], run[lag:]) for run in runs if len(run) > lag]
        products.append(float(np.mean(np.concatenate(pairs))))
    return np.asarray(products, dtype=np.float64) / products[0]


def integrated_time(rho: FloatArray) -> tuple[float, int, bool]:
    """(tau, lags summed, truncated): tau = 1 + 2 sum of rho(1..) up to the first lag where rho
    is 0 or below; truncated when rho stays positive to the last lag measured."""
    positive = rho[1:] > 0.0
    stop = int(np.argmin(positive)) if not positive.all() else len(positive)
    return float(1.0 + 2.0 * rho[1 : 1 + stop].sum()), stop, bool(positive.all())


def frame_period_s(sequences: IntArray, stamps_ns: IntArray | None) -> float | None:
    """The median spacing of successive frames within a sequence (s); None without stamps."""
    if stamps_ns is None:
        return None
    stamps_ns = np.asarray(stamps_ns, dtype=np.int64)
    steps = np.concatenate([np.diff(stamps_ns[sequences == s]) for s in np.unique(sequences)])
    return float(np.median(steps[steps > 0])) * 1e-9 if np.any(steps > 0) else None


def error_correlation(
    residuals: FloatArray, covariances: FloatArray, sequences: IntArray, stamps_ns: IntArray | None = None
) -> dict[str, Any]:
    """metrics.json's `error_correlation`: the errors' integrated autocorrelation time in frames and
    seconds (the frames' median spacing within a sequence), rho at lag 1, whether the trajectories
    were too short to see it end, and the covariance inflation an EKF that fuses every pose at this
    rate needs (tau, at least 1). Trajectories of one frame carry no pair: None values then."""
    sequences = np.asarray(sequences, dtype=np.int64)
    if len(residuals) < 2 or len(np.unique(sequences)) == len(sequences):
        return {
            "frames": None,
            "seconds": None,
            "lag1": None,
            "lags_summed": 0,
            "truncated": None,
            "suggested_covariance_inflation": None,
        }
    if stamps_ns is not None:  # time order within each sequence, whatever the file order
        order = np.lexsort((np.asarray(stamps_ns, dtype=np.int64), sequences))
        residuals, covariances = residuals[order], covariances[order]
        stamps_ns = np.asarray(stamps_ns, dtype=np.int64)[order]
        # and cut where the recording has a gap: frames either side of it are not successive
        sequences = trajectory_pieces(sequences[order], stamps_ns)
    rho = autocorrelation(whitened(residuals, covariances), sequences)
    tau, lags, truncated = integrated_time(rho)
    period_s = frame_period_s(sequences, stamps_ns)
    return {
        "frames": tau,
        "seconds": tau * period_s if period_s is not None else None,
        "lag1": float(rho[1]),
        "lags_summed": lags,
        "truncated": truncated,
        "suggested_covariance_inflation": max(1.0, tau),
    }
