"""`data.max_frames`: a subsample of whole trajectories, so tuple losses keep consecutive frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pose_regressor.rig import preset_rig
from pose_regressor_training.data.dataset import FrameEntry, FrameList
from pose_regressor_training.training_data import subsample_frames


def frames(sequences: int, length: int) -> FrameList:
    entries = [
        FrameEntry((Path(f"{s}_{k}.png"),), np.zeros(3), np.array([0.0, 0.0, 0.0, 1.0]), 10 * k, s)
        for s in range(sequences)
        for k in range(length)
    ]
    return FrameList(preset_rig("mono", 64, 48), entries)


def test_whole_trajectories_are_kept_evenly_spread() -> None:
    kept = subsample_frames(frames(40, 20), 200)  # 800 frames -> 10 of the 40 trajectories
    by_sequence: dict[int, list[int]] = {}
    for f in kept.frames:
        by_sequence.setdefault(f.sequence, []).append(f.stamp_ns)
    assert len(kept) == 200 and len(by_sequence) == 10
    assert all(stamps == [10 * k for k in range(20)] for stamps in by_sequence.values())  # consecutive
    assert min(by_sequence) == 0 and max(by_sequence) == 39  # spread over the whole recording


def test_few_trajectories_fall_back_to_every_kth_frame_and_small_sets_are_unchanged() -> None:
    one = frames(1, 100)
    kept = subsample_frames(one, 25)
    assert len(kept) == 25 and kept.frames[0].stamp_ns == 0 and kept.frames[-1].stamp_ns == 990
    assert subsample_frames(one, 0) is one and subsample_frames(one, 100) is one
