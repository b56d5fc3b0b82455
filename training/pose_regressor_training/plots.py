"""Plots of `pose-train eval-checkpoint` (matplotlib, Agg backend): error CDFs and error vs predicted std.

The trajectory plot and the reliability diagram are `pose_regressor.evaluate_plots`'s, shared with
the robot-side evaluations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib import ticker
from matplotlib.axes import Axes
from numpy.typing import NDArray

from pose_regressor.metrics import covariance_stds
from pose_regressor.uncertainty import CovarianceScale


def plot_error_cdf(
    path: Path, t_err: NDArray[np.float64], r_err: NDArray[np.float64], split: str, length_unit: str = "m"
) -> Path:
    """Cumulative distributions of the translation (`length_unit`) and rotation (deg) errors, with
    their medians."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, errors, unit, label in (
        (axes[0], t_err, length_unit, "translation error"),
        (axes[1], r_err, "deg", "rotation error"),
    ):
        values = np.sort(errors)
        ax.plot(values, np.arange(1, len(values) + 1) / len(values) * 100.0, lw=2)
        median = float(np.median(values))
        ax.axvline(median, color="crimson", ls="--", lw=1, label=f"median {median:.3g} {unit}")
        ax.set_xlabel(f"{label} ({unit})")
        ax.set_ylabel("frames within (%)")
        ax.set_ylim(0, 100)
        ax.set_xlim(left=0)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right")
    fig.suptitle(f"Error CDFs, {split} split ({len(t_err)} frames)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def readable_log_ticks(ax: Axes, lo: float, hi: float) -> None:
    """Plain-number labels (0.5, 1, 2) on both log axes of `ax`, spanning [lo, hi]. Over less than
    about two decades matplotlib labels the minor ticks too, in scientific notation, and on a small
    set's narrow range they ran into each other (3x10^-1 4x10^-1 6x10^-1 on one spot)."""
    subs = (1.0, 2.0, 5.0) if hi / lo < 100.0 else (1.0,)
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(ticker.LogLocator(base=10.0, subs=subs))
        axis.set_major_formatter(ticker.FuncFormatter(lambda value, _position: f"{value:g}"))
        axis.set_minor_locator(ticker.LogLocator(base=10.0, subs=tuple(range(1, 10))))
        axis.set_minor_formatter(ticker.NullFormatter())


def plot_error_vs_std(
    path: Path,
    t_err: NDArray[np.float64],
    r_err: NDArray[np.float64],
    covariances: NDArray[np.float64],
    uncertainty: dict[str, Any],
    length_unit: str = "m",
) -> Path:
    """Errors against the predicted (calibrated) standard deviations, with the 1:1 and 2:1 lines;
    `uncertainty` is the ``uncertainty`` section of the metrics."""
    pos_std, rot_std = covariance_stds(covariances)
    pos_std, rot_std = pos_std * np.sqrt(3.0), rot_std * np.sqrt(3.0)  # total 3-D std
    u = uncertainty
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for ax, std, err, unit, rho in (
        (axes[0], pos_std, t_err, length_unit, u["spearman_position_std_vs_error"]),
        (axes[1], rot_std, r_err, "deg", u["spearman_rotation_std_vs_error"]),
    ):
        # log-log: the stds of a calibration with an exponent span a factor of 100 or more, and a
        # linear axis squeezes the bulk of the frames into a corner beside a few unsure ones
        positive = np.concatenate([std[std > 0], err[err > 0]])
        lo = float(np.quantile(positive, 0.005)) / 1.5 if positive.size else 1e-3
        hi = float(positive.max()) * 1.5 if positive.size else 1.0
        ax.scatter(np.clip(std, lo, None), np.clip(err, lo, None), s=8, alpha=0.6)
        grid = np.geomspace(lo, hi, 10)
        ax.plot(grid, grid, "k--", lw=1, label="error = std")
        ax.plot(grid, 2 * grid, "k:", lw=1, label="error = 2 std")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        readable_log_ticks(ax, lo, hi)
        ax.set_xlabel(f"predicted std, calibrated ({unit})")
        ax.set_ylabel(f"error ({unit})")
        ax.set_title(f"Spearman rho = {rho:.2f}")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    scale = CovarianceScale.from_json(u["covariance_scale"]).describe()
    fig.suptitle(
        f"Error vs predicted std: median NEES {u['median_nees_before']:.3g} -> "
        f"{u['median_nees_after']:.3g} (ideal {u['median_nees_expected']:.3g})\ncovariance scale {scale}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
