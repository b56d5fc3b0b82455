"""The error-vs-std plot's log axes: plain-number labels that do not run into each other."""

from __future__ import annotations

import pytest

pytest.importorskip("matplotlib")

from matplotlib.figure import Figure

from pose_regressor_training.plots import readable_log_ticks


def visible_labels(lo: float, hi: float) -> tuple[list[str], list[str]]:
    """(major, minor) x-axis labels inside [lo, hi] once the figure is drawn."""
    fig = Figure()
    ax = fig.subplots()
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    readable_log_ticks(ax, lo, hi)
    fig.canvas.draw()

    def inside(locs: list[float], labels: list[str]) -> list[str]:
        return [label for loc, label in zip(locs, labels, strict=True) if lo <= loc <= hi]

    axis = ax.xaxis
    major = inside(list(axis.get_majorticklocs()), [t.get_text() for t in axis.get_majorticklabels()])
    minor = inside(list(axis.get_minorticklocs()), [t.get_text() for t in axis.get_minorticklabels()])
    return major, minor


def test_a_narrow_range_is_labelled_1_2_5_in_plain_numbers() -> None:
    # a small set's stds: 0.3 to 7 units, where matplotlib's default wrote 3x10^-1 4x10^-1 6x10^-1
    major, minor = visible_labels(0.3, 7.0)
    assert major == ["0.5", "1", "2", "5"]
    assert set(minor) == {""}


def test_a_wide_range_is_labelled_at_the_decades_only() -> None:
    major, minor = visible_labels(1e-3, 10.0)
    assert major == ["0.001", "0.01", "0.1", "1", "10"]
    assert set(minor) == {""}
