"""Evaluation plots shared by `pose-regressor eval-node` / `eval-folder` and `pose-train
eval-checkpoint` (matplotlib, Agg backend).

matplotlib is a development and training dependency, not a robot one: the robot-side evaluate
writes no plots when it is missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Ellipse
from numpy.typing import NDArray

from pose_regressor.metrics import trajectory_pieces

SIGMAS = 2.0


# more sequences than this share one legend entry
MAX_NAMED_SEQUENCES = 8


def plot_trajectory(
    path: Path,
    t_gt: NDArray[np.float64],
    t_pred: NDArray[np.float64],
    title: str,
    covariances: NDArray[np.float64] | None = None,
    sequences: NDArray[np.int64] | None = None,
    max_ellipses: int = 60,
    stamps_ns: NDArray[np.int64] | None = None,
    unit: str = "m",
) -> Path:
    """Ground truth per sequence, predictions [N, 3], their errors, and `SIGMAS`-sigma position
    ellipses of `covariances` [N, 6, 6] on at most about `max_ellipses` of them.

    The view is top-down (x, y) when z is the axis the ground truth varies least along, else the
    plane of its two largest principal axes (`view_plane`). The ground-truth line breaks between
    sequences and across time gaps of `stamps_ns` (`metrics.trajectory_pieces`). `unit`: what positions are in
    ("m", or "units" for a folder imported without a scale)."""
    if sequences is None:
        sequences = np.zeros(len(t_gt), dtype=np.int64)
    projection, (x_label, y_label) = view_plane(t_gt, unit)
    gt_2d, pred_2d = t_gt @ projection.T, t_pred @ projection.T
    pieces = trajectory_pieces(sequences, stamps_ns)
    fig, ax = plt.subplots(figsize=(9, 7))
    colours = plt.get_cmap("tab10")
    labels = np.unique(sequences)
    several = len(labels) > 1
    # a legend entry per sequence only while the legend stays small: 80 test trajectories would
    # cover the plot with 80 entries
    named = len(labels) <= MAX_NAMED_SEQUENCES
    for k, seq in enumerate(labels):
        colour = colours(k % 10)
        for n, piece in enumerate(np.unique(pieces[sequences == seq])):
            sel = pieces == piece
            if n > 0 or (not named and k > 0):
                label = None
            elif not several:
                label = "ground truth"
            else:
                label = f"ground truth, seq {seq}" if named else f"ground truth ({len(labels)} sequences)"
            ax.plot(gt_2d[sel, 0], gt_2d[sel, 1], "-", color=colour, lw=2, label=label)
        sel = sequences == seq
        ax.plot(pred_2d[sel, 0], pred_2d[sel, 1], ".", color=colour, ms=4, alpha=0.8)
    for i in range(len(pred_2d)):
        ax.plot(
            [gt_2d[i, 0], pred_2d[i, 0]], [gt_2d[i, 1], pred_2d[i, 1]], "-", color="0.6", lw=0.5, zorder=0
        )
    if covariances is not None:
        step = max(1, len(t_pred) // max_ellipses)
        every = "every estimate" if step == 1 else f"one estimate in {step}"
        for i in range(0, len(t_pred), step):
            cov_2d = projection @ covariances[i, :3, :3] @ projection.T
            ax.add_patch(_ellipse(pred_2d[i], cov_2d, fill=False, color="crimson", lw=0.8))
        ax.plot([], [], color="crimson", lw=0.8, label=f"{SIGMAS:g}-sigma position ({every})")
    ax.plot([], [], ".", color="k", label="prediction (MC mean)")
    ax.plot([], [], "-", color="0.6", lw=0.5, label="error")
    ax.set_title(title)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.set_aspect("equal", adjustable="datalim")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def view_plane(
    positions: NDArray[np.float64], unit: str = "m"
) -> tuple[NDArray[np.float64], tuple[str, str]]:
    """The [2, 3] projection of the trajectory plot and its axis labels: map x and y when z is the
    smallest-variance principal axis of `positions` (z is up), else their two largest principal
    axes (a SfM or camera frame whose vertical is not z)."""
    top_down = np.eye(3)[:2], (f"x ({unit}, map)", f"y ({unit}, map)")
    if len(positions) < 3:
        return top_down
    _, vectors = np.linalg.eigh(np.cov(positions.T))  # eigenvalues ascending
    if int(np.argmax(np.abs(vectors[:, 0]))) == 2:
        return top_down
    axes = vectors[:, [2, 1]].T
    axes *= np.sign(axes[np.arange(2), np.argmax(np.abs(axes), axis=1)])[:, None]  # largest part > 0
    labels = tuple(
        f"principal axis {n + 1}: {_combination(axis)} ({unit}, map)" for n, axis in enumerate(axes)
    )
    return axes, (labels[0], labels[1])


def _combination(axis: NDArray[np.float64]) -> str:
    terms = [f"{w:+.2f} {name}" for w, name in zip(axis, "xyz", strict=True) if abs(w) >= 0.005]
    return " ".join(terms).lstrip("+")


def _ellipse(center: NDArray[np.float64], cov_xy: NDArray[np.float64], **style: Any) -> Ellipse:
    values, vectors = np.linalg.eigh(cov_xy)
    values = np.clip(values, 0.0, None)  # round-off can make a flat covariance slightly negative
    angle = np.degrees(np.arctan2(vectors[1, 1], vectors[0, 1]))  # of the major axis (largest eigenvalue)
    width, height = 2 * SIGMAS * np.sqrt(values[1]), 2 * SIGMAS * np.sqrt(values[0])
    return Ellipse(
        (float(center[0]), float(center[1])), float(width), float(height), angle=float(angle), **style
    )


def plot_evaluation(arrays: dict[str, np.ndarray], metrics: dict[str, Any], out: Path) -> list[Path]:
    """The plots of `pose-regressor eval-node`: trajectory, errors over time, the reliability of the
    published covariance and (soak runs) soak.png."""
    paths = [out / "trajectory.png", out / "errors_over_time.png"]
    unit = metrics.get("length_unit", "m")
    title = (
        f"Replay at {metrics['rate']:g}x: median {metrics['median_translation_m']:.2f} {unit}, "
        f"{metrics['median_rotation_deg']:.1f} deg; output/input sets {metrics['output_rate_ratio']:.2f}; "
        f"end-to-end latency p50 {metrics['e2e_latency_ms_p50']:.1f} ms"
    )
    # the ground truth's own stamps (a looped replay's go back at each loop): the line breaks there
    gt_stamps = arrays.get("gt_stamps", arrays["stamps"])
    plot_trajectory(
        paths[0],
        arrays["t_gt"],
        arrays["t_pred"],
        title,
        arrays["covs"],
        max_ellipses=25,
        stamps_ns=gt_stamps,
        unit=unit,
    )

    seconds = (arrays["stamps"] - arrays["stamps"][0]) / 1e9
    fig, axes = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    axes[0].plot(seconds, arrays["t_err"], label=f"translation error ({unit})")
    axes[0].plot(seconds, arrays["pos_std"] * np.sqrt(3), label=f"predicted std, 3-D ({unit})")
    axes[1].plot(seconds, arrays["r_err"], label="rotation error (deg)")
    axes[1].plot(seconds, arrays["rot_std"] * np.sqrt(3), label="predicted std, 3-D (deg)")
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper right", fontsize=8)
        ax.set_ylim(bottom=0)
    axes[1].set_xlabel("bag time (s)")
    fig.suptitle("Errors and predicted uncertainty over time")
    fig.tight_layout()
    fig.savefig(paths[1], dpi=110)
    plt.close(fig)
    paths.append(plot_reliability(out / "reliability.png", metrics, "the published covariance"))
    if "soak" in metrics and len(arrays.get("soak_t", ())):
        paths.append(plot_soak(arrays, metrics["soak"], out / "soak.png"))
    return paths


def plot_soak(arrays: dict[str, np.ndarray], soak: dict[str, Any], path: Path) -> Path:
    """Node RSS and latency percentiles over a long run, with the compared windows shaded."""
    fig, axes = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    axes[0].plot(arrays["soak_rss_t"], arrays["soak_rss"], color="tab:purple")
    axes[0].set_ylabel("node RSS (MB)")
    axes[0].set_title(
        f"RSS growth {soak['rss_growth_pct']:+.1f}% (limit {soak['limits']['max_rss_growth_pct']:g}%), "
        f"latency p99 change {soak['latency_p99_change_pct']:+.1f}% "
        f"(limit {soak['limits']['max_p99_change_pct']:g}%): "
        + ("PASS" if soak["passed"] else "FAIL " + ", ".join(k for k, ok in soak["checks"].items() if not ok))
    )
    axes[1].plot(arrays["soak_t"], arrays["soak_p50"], label="latency p50")
    axes[1].plot(arrays["soak_t"], arrays["soak_p99"], label="latency p99")
    axes[1].set_ylabel("end-to-end latency (ms)")
    axes[1].set_xlabel("time since the first image (s)")
    axes[1].legend(loc="upper right", fontsize=8)
    first = (soak["warmup_s"], soak["warmup_s"] + soak["window_s"])
    last = (soak["duration_s"] - soak["window_s"], soak["duration_s"])
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
        for lo, hi in (first, last):
            ax.axvspan(lo, hi, color="grey", alpha=0.15)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_reliability(
    path: Path, uncertainty: dict[str, Any], what: str = "the calibrated covariance"
) -> Path:
    """Reliability diagram of `what`: for each confidence level, the share of ground truths inside
    that level's ellipsoid (6-DoF and per block) against the diagonal of a consistent covariance;
    `uncertainty` holds ``reliability`` and ``inside_95_ellipsoid`` (`uncertainty_metrics`)."""
    curves = uncertainty["reliability"]
    levels = np.asarray(curves["levels"]) * 100.0
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 100], [0, 100], "k--", lw=1, label="consistent (observed = expected)")
    for name, label, style in (
        ("6dof", "6-DoF", "o-"),
        ("position", "position (3-D)", "s-"),
        ("rotation", "rotation (3-D)", "^-"),
    ):
        inside = uncertainty["inside_95_ellipsoid"][name] * 100.0
        observed = np.asarray(curves[name]) * 100.0
        ax.plot(levels, observed, style, ms=4, lw=1.5, label=f"{label}: {inside:.0f}% inside 95%")
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    ax.set_aspect("equal")
    ax.set_xlabel("expected coverage: ellipsoid confidence level (%)")
    ax.set_ylabel("observed coverage: ground truths inside (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(
        f"Reliability of {what}\n(above the diagonal: too wide; below: overconfident)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
