"""The trajectory plot: which plane it shows, and where its ground-truth line breaks."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from matplotlib.figure import Figure

from pose_regressor import evaluate_plots
from pose_regressor.evaluate_plots import plot_trajectory, view_plane
from pose_regressor.metrics import trajectory_pieces as line_pieces


def loop(n: int = 80) -> np.ndarray:
    """A 4 m x 2 m loop at 0.3 m height, with a little height noise (z is up)."""
    a = np.linspace(0, 2 * np.pi, n)
    return np.stack([4 * np.cos(a), 2 * np.sin(a), 0.3 + 0.02 * np.sin(7 * a)], axis=1)


def test_a_z_up_trajectory_is_shown_top_down() -> None:
    projection, labels = view_plane(loop())
    np.testing.assert_array_equal(projection, np.eye(3)[:2])
    assert labels == ("x (m, map)", "y (m, map)")


def test_a_y_down_trajectory_is_shown_in_its_own_plane_with_named_axes() -> None:
    t = loop()[:, [0, 2, 1]]  # a camera frame as SfM gives it: the ground plane is x-z
    projection, labels = view_plane(t)
    assert np.allclose(np.abs(projection), [[1, 0, 0], [0, 0, 1]], atol=0.01)
    assert labels[0].startswith("principal axis 1: 1.00 x") and "1.00 z" in labels[1]
    spread = (t - t.mean(axis=0)) @ projection.T
    assert np.ptp(spread[:, 0]) > 7.9 and np.ptp(spread[:, 1]) > 3.9  # the loop, not its edge


def test_the_line_breaks_between_sequences_at_time_gaps_and_where_time_goes_back() -> None:
    sequences = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1])
    ms = np.array([0, 100, 200, 900, 0, 100, 200, 100, 200])  # 900: a gap; 200 -> 100: a loop restarts
    pieces = line_pieces(sequences, ms * 1_000_000)
    assert pieces.tolist() == [0, 0, 0, 1, 2, 2, 2, 3, 3]
    assert line_pieces(sequences).tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 1]


def test_the_plot_is_written_for_either_plane(tmp_path: Path) -> None:
    t = loop()
    rng = np.random.default_rng(0)
    covs = np.tile(np.diag([0.04, 0.01, 0.02, 1e-3, 1e-3, 1e-3]), (len(t), 1, 1))
    stamps = np.arange(len(t)) * 100_000_000
    stamps[40:] += 5_000_000_000  # two pieces of one sequence: no line across the gap
    for name, gt in (("z_up", t), ("y_down", t[:, [0, 2, 1]])):
        path = plot_trajectory(
            tmp_path / f"{name}.png", gt, gt + rng.normal(0, 0.1, gt.shape), name, covs, stamps_ns=stamps
        )
        assert path.stat().st_size > 10_000


def test_many_sequences_share_one_legend_entry_and_the_layout_fits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 80 held-out trajectories of 20 frames, as the default's test split: one legend line per
    # sequence used to overflow the figure (matplotlib: "Tight layout not applied").
    t = np.concatenate([loop(20) * 0.5 + [k % 9, k // 9, 0] for k in range(80)])
    sequences = np.repeat(np.arange(80), 20)
    closed: list[Figure] = []
    monkeypatch.setattr(evaluate_plots.plt, "close", closed.append)  # keep the figure to read its legend
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = plot_trajectory(tmp_path / "many.png", t, t + 0.05, "80 sequences", sequences=sequences)
    assert path.stat().st_size > 10_000
    legend = closed[0].axes[0].get_legend()
    assert [text.get_text() for text in legend.get_texts()] == [
        "ground truth (80 sequences)",
        "prediction (MC mean)",
        "error",
    ]
