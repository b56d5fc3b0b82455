"""The ablation's two figures, from each run's history.json: validation error against training time,
and the training loss terms (with learned weights) per epoch."""

from __future__ import annotations

import math
import textwrap
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from ablation_plan import Run

if TYPE_CHECKING:
    from run_folder import RunResult


def plot_error_vs_time(
    path: Path, runs: list[Run], results: dict[str, RunResult], chosen: set[str], offsets: dict[str, float]
) -> Path:
    """Validation median translation and rotation error at each validated epoch against the wall
    minutes of training so far (`offsets`: minutes before the run began, e.g. of the run a
    fine-tuning starts from). The chosen setting of each idea is drawn bold, the others faint."""
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    colors = _colors(runs)
    for run in runs:
        points = [
            (offsets.get(run.name, 0.0) + e["seconds"] / 60, e["val"])
            for e in results[run.name].history
            if e.get("val")
        ]
        if not points:
            continue
        minutes = [m for m, _ in points]
        bold = run.name in chosen
        style = {"color": colors[run.idea], "lw": 2 if bold else 0.8, "alpha": 1.0 if bold else 0.35}
        label = f"{run.idea}: {run.setting}" if bold else None
        axes[0].plot(
            minutes, [v["median_translation_m"] for _, v in points], marker="o", ms=3, label=label, **style
        )
        axes[1].plot(minutes, [v["median_rotation_deg"] for _, v in points], marker="o", ms=3, **style)
    for ax, unit in ((axes[0], "median translation error (m)"), (axes[1], "median rotation error (deg)")):
        ax.set_xlabel("training time (min, validation included)")
        ax.set_ylabel(f"validation {unit}")
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=7)
    fig.suptitle("Validation error against training time (bold: each method's chosen setting)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_learning_curves(path: Path, runs: list[Run], results: dict[str, RunResult]) -> Path:
    """Per run, the mean training loss terms per epoch (solid, log scale) and the learned weights
    e^(-s) of the homoscedastic-form losses (dashed, right axis): the balance of the terms."""
    cols = min(4, max(1, len(runs)))
    rows = math.ceil(len(runs) / cols) or 1
    # at least 8 inches wide: the title must fit over a single panel
    fig, axes = plt.subplots(rows, cols, figsize=(max(8.0, 4.2 * cols), 3.6 * rows), squeeze=False)
    for ax, run in zip(axes.flat, runs, strict=False):
        history = results[run.name].history
        epochs = [e["epoch"] for e in history]
        keys = sorted({k for e in history for k in e["train"]})
        for key in keys:
            if key.startswith("s_") or key == "total":
                continue
            values = [e["train"].get(key, math.nan) for e in history]
            if all(v > 0 for v in values if not math.isnan(v)):
                ax.plot(epochs, values, marker="o", ms=2, color=term_color(key), label=key)
        ax.set_yscale("log")
        weights = [k for k in keys if k.startswith("s_")]
        if weights:
            twin = ax.twinx()
            for key in weights:
                values = [math.exp(-e["train"][key]) for e in history]
                # a weight wears its term's colour (s_t weighs t), dashed, so panels read alike
                twin.plot(
                    epochs, values, ls="--", marker="o", ms=2, color=term_color(key[2:]), label=f"e^-{key}"
                )
            twin.set_yscale("log")
            twin.legend(fontsize=6, loc="upper right")
        ax.set_title(f"{run.name}\n" + textwrap.fill(run.setting, 48), fontsize=7)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=6, loc="lower left")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(runs) :]:
        ax.axis("off")
    fig.suptitle("Training loss terms per epoch (solid) and learned weights e^-s (dashed)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# One colour per loss term across every panel; relative and odometry terms are lighter shades of
# their absolute term's colour (tab20 pairs a colour with its light shade).
_TAB20 = plt.get_cmap("tab20")
_TERM_COLORS = {
    "t": _TAB20(0),
    "t_rel": _TAB20(1),
    "t_odom": _TAB20(1),
    "q": _TAB20(2),
    "q_rel": _TAB20(3),
    "q_odom": _TAB20(3),
    "coupling": _TAB20(4),
    "metric": _TAB20(8),
    "reproj_px": _TAB20(6),
    "variance_nll": _TAB20(14),
}


def term_color(term: str) -> tuple[float, float, float, float]:
    """The colour of a loss term (and of its learned weight) in every learning-curve panel."""
    if term in _TERM_COLORS:
        return _TERM_COLORS[term]
    # a term added later: a stable colour from the rows of tab20 that the known terms leave free
    free_rows = (5, 6, 8, 9)
    row = free_rows[zlib.crc32(term.encode()) % len(free_rows)]
    color: tuple[float, float, float, float] = _TAB20(2 * row)
    return color


def _colors(runs: list[Run]) -> dict[str, tuple[float, float, float, float]]:
    ideas = list(dict.fromkeys(run.idea for run in runs))
    cmap = plt.get_cmap("tab20")
    return {idea: cmap(i % 20) for i, idea in enumerate(ideas)}
