"""Trajectories stay in free space, move smoothly, and splits never share a trajectory."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from pose_regressor.rig import preset_rig
from pose_regressor_training.synth.generate import SynthConfig, plan_frames, split_trajectories
from pose_regressor_training.synth.scene import Scene
from pose_regressor_training.synth.trajectory import STYLES, generate_trajectory


@pytest.fixture(scope="module")
def scene() -> Scene:
    return Scene()


@pytest.mark.parametrize("kind", ["drone", "ground"])
def test_trajectories_are_collision_free_and_smooth(scene: Scene, kind: str) -> None:
    rng = np.random.default_rng(7)
    style = STYLES[kind]
    fps = 10.0
    for _ in range(10):
        t, q = generate_trajectory(scene, kind, 120, fps, rng)
        assert t.shape == (120, 3) and q.shape == (120, 4)
        assert np.all(q[:, 3] >= 0)
        np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-12)
        assert scene.is_free(t, np.array([0.3, 0.3, 0.2]), 0.3).all()  # clear of walls, floor, boxes
        speed = np.linalg.norm(np.diff(t, axis=0), axis=1) * fps
        assert speed.max() <= style.speed_range[1] * 1.05
        turn_deg = (Rotation.from_quat(q[:-1]).inv() * Rotation.from_quat(q[1:])).magnitude() * 180 / np.pi
        assert turn_deg.max() < 25.0  # at 10 Hz: no jumps
        if kind == "ground":
            np.testing.assert_allclose(t[:, 2], style.height_range[0])
            roll_pitch = Rotation.from_quat(q).as_euler("ZYX")[:, 1:]
            np.testing.assert_allclose(roll_pitch, 0.0, atol=1e-9)


def test_drone_trajectories_explore_the_room(scene: Scene) -> None:
    rng = np.random.default_rng(1)
    points = np.concatenate([generate_trajectory(scene, "drone", 100, 10.0, rng)[0] for _ in range(20)])
    extent = points.max(axis=0) - points.min(axis=0)
    assert extent[0] > 5.5 and extent[1] > 3.5 and extent[2] > 1.2


def test_split_is_80_10_10_by_whole_trajectories() -> None:
    labels = split_trajectories(30, np.random.default_rng(0))
    assert labels.count("test") == 3 and labels.count("val") == 3 and labels.count("train") == 24
    assert set(split_trajectories(3, np.random.default_rng(0))) == {"train", "val", "test"}
    with pytest.raises(ValueError):
        split_trajectories(2, np.random.default_rng(0))


def test_planned_frames_keep_each_trajectory_in_one_split(scene: Scene, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = SynthConfig(out=tmp_path, rig=preset_rig("mono"), frames=1000)
    frames = plan_frames(cfg, scene, np.random.default_rng(0))
    assert len(frames) == 1000
    split_of: dict[int, set[str]] = {}
    for f in frames:
        split_of.setdefault(f.sequence, set()).add(f.split)
    assert all(len(s) == 1 for s in split_of.values())
    assert len(split_of) == 10
    stamps = np.array([f.stamp_ns for f in frames])
    assert np.all(np.diff(stamps) > 0)
    within = np.diff(stamps)[np.diff([f.sequence for f in frames]) == 0]
    assert np.all(within == 100_000_000)  # 10 Hz inside a trajectory


def test_frames_per_trajectory_spreads_the_frames_over_more_trajectories(scene: Scene, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = SynthConfig(out=tmp_path, rig=preset_rig("mono"), frames=400, frames_per_trajectory=20)
    frames = plan_frames(cfg, scene, np.random.default_rng(0))
    lengths = np.bincount([f.sequence for f in frames])
    assert len(frames) == 400 and len(lengths) == 20 and np.all(lengths == 20)
    splits = [next(f.split for f in frames if f.sequence == s) for s in range(20)]
    assert splits.count("test") == 2 and splits.count("val") == 2 and splits.count("train") == 16
    with pytest.raises(ValueError, match="frames per trajectory must be >= 1"):
        plan_frames(SynthConfig(out=tmp_path, rig=preset_rig("mono"), frames_per_trajectory=0), scene,
                    np.random.default_rng(0))  # fmt: skip
