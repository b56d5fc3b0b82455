"""Evaluation plots (matplotlib, Agg backend): trajectory with uncertainty, error CDFs, error vs std."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Ellipse

if TYPE_CHECKING:
    from pose_regressor_training.evaluate import Evaluation

SIGMAS = 2.0


def _ellipse(center: np.ndarray, cov_xy: np.ndarray, **style: object) -> Ellipse:
    values, vectors = np.linalg.eigh(cov_xy)
    values = np.clip(values, 0.0, None)
    angle = np.degrees(np.arctan2(vectors[1, 1], vectors[0, 1]))
    width, height = 2 * SIGMAS * np.sqrt(values[1]), 2 * SIGMAS * np.sqrt(values[0])
    return Ellipse(
        (float(center[0]), float(center[1])), float(width), float(height), angle=float(angle), **style
    )


def plot_trajectory(ev: Evaluation, path: Path, max_ellipses: int = 60) -> Path:
    """Top-down (x, y) view: ground truth per sequence, predictions, and 2-sigma position ellipses."""
    pred = np.stack([e.translation for e in ev.estimates])
    fig, ax = plt.subplots(figsize=(9, 7))
    colours = plt.get_cmap("tab10")
    for k, seq in enumerate(np.unique(ev.sequences)):
        sel = ev.sequences == seq
        colour = colours(k % 10)
        ax.plot(ev.t_gt[sel, 0], ev.t_gt[sel, 1], "-", color=colour, lw=2, label=f"ground truth, seq {seq}")
        ax.plot(pred[sel, 0], pred[sel, 1], ".", color=colour, ms=4, alpha=0.8)
    for i in range(len(pred)):
        ax.plot([ev.t_gt[i, 0], pred[i, 0]], [ev.t_gt[i, 1], pred[i, 1]], "-", color="0.6", lw=0.5, zorder=0)
    if ev.metrics.get("uncertainty"):
        step = max(1, len(pred) // max_ellipses)
        for i in range(0, len(pred), step):
            ax.add_patch(
                _ellipse(pred[i], ev.estimates[i].covariance[:2, :2], fill=False, color="crimson", lw=0.8)
            )
        ax.plot([], [], color="crimson", lw=0.8, label=f"{SIGMAS:g}-sigma position (every {step}th frame)")
    ax.plot([], [], ".", color="k", label="prediction (MC mean)")
    ax.plot([], [], "-", color="0.6", lw=0.5, label="error")
    m = ev.metrics
    ax.set_title(
        f"{m['split']} split: median {m['median_translation_m']:.2f} m, {m['median_rotation_deg']:.1f} deg "
        f"({m['frames']} frames)"
    )
    ax.set_xlabel("x (m, map)")
    ax.set_ylabel("y (m, map)")
    ax.set_aspect("equal", adjustable="datalim")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_error_cdf(ev: Evaluation, path: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, errors, unit, label in (
        (axes[0], ev.translation_errors, "m", "translation error"),
        (axes[1], ev.rotation_errors, "deg", "rotation error"),
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
    fig.suptitle(f"Error CDFs, {ev.metrics['split']} split ({ev.metrics['frames']} frames)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_error_vs_std(ev: Evaluation, path: Path) -> Path:
    """Errors against the predicted (calibrated) standard deviations, with the 1:1 and 2:1 lines."""
    pos_std = np.array([e.position_std for e in ev.estimates]) * np.sqrt(3.0)  # total 3-D std
    rot_std = np.degrees([e.rotation_std for e in ev.estimates]) * np.sqrt(3.0)
    u = ev.metrics["uncertainty"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for ax, std, err, unit, rho in (
        (axes[0], pos_std, ev.translation_errors, "m", u["spearman_position_std_vs_error"]),
        (axes[1], rot_std, ev.rotation_errors, "deg", u["spearman_rotation_std_vs_error"]),
    ):
        ax.scatter(std, err, s=8, alpha=0.6)
        top = float(max(std.max(), err.max()) * 1.1)
        grid = np.linspace(0, top, 10)
        ax.plot(grid, grid, "k--", lw=1, label="error = std")
        ax.plot(grid, 2 * grid, "k:", lw=1, label="error = 2 std")
        ax.set_xlim(0, float(std.max()) * 1.1)
        ax.set_ylim(0, float(err.max()) * 1.1)
        ax.set_xlabel(f"predicted std, calibrated ({unit})")
        ax.set_ylabel(f"error ({unit})")
        ax.set_title(f"Spearman rho = {rho:.2f}")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    fig.suptitle(
        f"Error vs MC-dropout std (covariance scale {u['covariance_scale']:.3g}, "
        f"median NEES {u['median_nees_before']:.3g} -> {u['median_nees_after']:.3g}, "
        f"ideal {u['median_nees_expected']:.3g})"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
