"""`pose-train synth` conditions: each changes the render the way it says and nothing else."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from rosbags.rosbag2 import Reader
from scipy.spatial.transform import Rotation

from pose_regressor.rig import preset_rig
from pose_regressor_training.cli import main
from pose_regressor_training.data.folder import image_path, read_frames, read_metadata
from pose_regressor_training.synth.conditions import (
    LIGHTS_OFF_GAIN,
    MOVED_BOX,
    MOVED_BOX_CLEARANCE,
    MOVED_BOX_INDEX,
    Condition,
    Region,
    with_moved_box,
)
from pose_regressor_training.synth.generate import SynthConfig, plan_frames
from pose_regressor_training.synth.movable import HELD_OUT_GAP, OBSTACLE_GAP, place_boxes
from pose_regressor_training.synth.render import Lighting, RigRenderer
from pose_regressor_training.synth.scene import Box, Scene, SceneConfig

# Base at (-1.5, 0, 0.5) looking along +x: the nominal front camera sees the x = 4 wall, the moved
# box (x from 0.6) stands in its way.
POSE = (np.array([-1.5, 0.0, 0.5]), Rotation.identity().as_quat())


@pytest.fixture(scope="module")
def scene() -> Scene:
    return Scene()


@pytest.fixture(scope="module")
def renderer(scene: Scene) -> RigRenderer:
    return RigRenderer(scene, preset_rig("quad", 40, 30))


def render(renderer: RigRenderer, **condition: object) -> list[np.ndarray]:
    lighting = Lighting(1.1, 0.9, 1.05)
    views = renderer.render(*POSE, lighting, 2.0, np.random.default_rng(7), **condition)  # type: ignore[arg-type]
    return [v.image for v in views]


def test_default_arguments_render_exactly_the_nominal_images(renderer: RigRenderer) -> None:
    nominal = render(renderer)
    for a, b in zip(nominal, render(renderer, light_gain=1.0, covered=None), strict=True):
        np.testing.assert_array_equal(a, b)


def test_lights_off_darkens_and_overexposed_clips(renderer: RigRenderer) -> None:
    nominal = np.stack(render(renderer)).astype(float)
    dark = np.stack(render(renderer, light_gain=Condition("lights_off").light_gain)).astype(float)
    bright = np.stack(render(renderer, light_gain=Condition("overexposed").light_gain)).astype(float)
    assert dark.mean() == pytest.approx(LIGHTS_OFF_GAIN * nominal.mean(), rel=0.15)
    assert dark.mean() < 25
    assert bright.mean() > 1.8 * nominal.mean()
    assert np.mean(bright >= 254) > 0.4 > np.mean(nominal >= 254)


def test_covered_camera_is_near_black_and_the_others_unchanged(renderer: RigRenderer) -> None:
    nominal = render(renderer)
    covered = render(renderer, covered="front")
    assert covered[0].mean() < 3 and covered[0].max() < 20 and covered[0].std() > 0.5  # noise, not zero
    for a, b in zip(nominal[1:], covered[1:], strict=True):
        np.testing.assert_array_equal(a, b)


def test_box_moved_stands_in_the_front_cameras_view(scene: Scene) -> None:
    rig = preset_rig("quad", 40, 30)
    moved = Scene(Condition("box_moved").render_scene(SceneConfig()))
    before = RigRenderer(scene, rig).render(*POSE)
    after = RigRenderer(moved, rig).render(*POSE)
    centre = (15, 20)
    assert before[0].depth[centre] > 5.0  # the far wall
    assert after[0].depth[centre] == pytest.approx(
        MOVED_BOX.lo[0] - (-1.5) - rig.cameras[0].translation[0], abs=0.02
    )
    assert not np.array_equal(before[0].image, after[0].image)
    # Only the box moved: its textures are the same as before (the same size, the same seed).
    assert all(np.array_equal(a, b) for a, b in zip(scene.textures, moved.textures, strict=True))


def small_plan(**options: object) -> list:
    options = {"frames_per_trajectory": 20, **options}
    cfg = SynthConfig(out=Path("unused"), rig=preset_rig("mono", 8, 6), frames=120, **options)  # type: ignore[arg-type]
    return plan_frames(cfg, Scene(), np.random.default_rng(cfg.seed))


def test_box_moved_keeps_the_nominal_frames_minus_those_inside_the_moved_box(tmp_path: Path) -> None:
    # Seed 5: some of its paths cross where the box now stands.
    args = ["synth", "--rig", "mono", "--width", "16", "--height", "16", "--frames", "120", "--quiet"]
    args += ["--frames-per-trajectory", "20", "--seed", "5", "--noise-std", "3", "--workers", "1"]
    assert main([*args, "--out", str(tmp_path / "nominal")]) == 0
    assert main([*args, "--out", str(tmp_path / "moved"), "--condition", "box_moved"]) == 0
    nominal, moved = read_frames(tmp_path / "nominal"), read_frames(tmp_path / "moved")
    kept = [f for f in nominal if not MOVED_BOX.contains(f.translation, MOVED_BOX_CLEARANCE)]
    assert 0 < len(moved) == len(kept) < len(nominal)
    assert [(f.index, f.stamp_ns) for f in moved] == [(f.index, f.stamp_ns) for f in kept]
    # Views that see neither the old nor the new place of the box are the nominal images, light
    # and noise included; the others differ.
    same = [
        np.array_equal(
            cv2.imread(str(image_path(tmp_path / "nominal", "front", f.index))),
            cv2.imread(str(image_path(tmp_path / "moved", "front", f.index))),
        )
        for f in moved
    ]
    assert 0 < sum(same) < len(same)


def test_excluded_region_has_no_training_frames_inside_and_the_inside_set_only_such() -> None:
    region = Region.parse("x>1.5")
    excluded = small_plan(exclude_region=region)
    assert not any(region.contains(f.translation) for f in excluded if f.split in ("train", "val"))
    assert sum(f.split in ("train", "val") for f in excluded) == 100
    inside = small_plan(inside_region=region, only_split="test")
    assert {f.split for f in inside} == {"test"} and len(inside) == 120
    assert all(f.translation[0] > 1.5 for f in inside)


def test_only_split_keeps_the_trajectories_of_the_same_seed() -> None:
    nominal, test_only = small_plan(), small_plan(only_split="test")
    assert {f.split for f in test_only} == {"test"}
    np.testing.assert_array_equal([f.translation for f in nominal], [f.translation for f in test_only])


@pytest.mark.parametrize(("frames_per_trajectory", "trajectories"), [(120, 1), (60, 2), (50, 3)])
def test_one_split_alone_takes_the_trajectory_length_asked_for(
    frames_per_trajectory: int, trajectories: int
) -> None:
    # A split drawn among train, val and test needs three trajectories; one split alone does not,
    # so a video of 120 frames is one trajectory, not three of 40.
    plan = small_plan(only_split="train", frames_per_trajectory=frames_per_trajectory)
    assert len(plan) == 120 and len({f.sequence for f in plan}) == trajectories
    assert len({f.sequence for f in small_plan(frames_per_trajectory=frames_per_trajectory)}) == 3


@pytest.mark.parametrize(
    ("text", "axis", "above", "bound"),
    [("x>1.5", 0, True, 1.5), (" y < -1 ", 1, False, -1.0), ("z>.5", 2, True, 0.5)],
)
def test_region_parses_and_prints(text: str, axis: int, above: bool, bound: float) -> None:
    region = Region.parse(text)
    assert (region.axis, region.above, region.bound) == (axis, above, bound)
    assert Region.parse(str(region)) == region


def test_condition_is_recorded_in_dataset_yaml_and_bag(tmp_path: Path) -> None:
    out, bag = tmp_path / "data", tmp_path / "test.bag"
    args = ["synth", "--rig", "quad", "--width", "16", "--height", "12", "--frames", "3", "--quiet"]
    args += ["--out", str(out), "--bag", str(bag), "--workers", "1"]
    assert (
        main([*args, "--condition", "camera_covered", "--covered-camera", "left", "--only-split", "test"])
        == 0
    )
    provenance = read_metadata(out)["provenance"]
    assert provenance["condition"] == {"name": "camera_covered", "covered_camera": "left"}
    assert provenance["only_split"] == "test"
    assert {f.split for f in read_frames(out)} == {"test"}
    with Reader(bag) as reader:  # a bag rosbags reads
        assert reader.message_count == 15
    custom = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]["custom_data"]
    assert custom["synth.condition.name"] == "camera_covered"
    assert custom["synth.condition.covered_camera"] == "left"


def test_movable_box_places_are_clear_of_the_paths_the_walls_the_obstacles_and_the_test_place() -> None:
    cfg = SynthConfig(out=Path("unused"), rig=preset_rig("mono", 8, 6), frames=2000, frames_per_trajectory=20)
    frames = plan_frames(cfg, Scene(), np.random.default_rng(0))
    config = SceneConfig()
    placed = place_boxes(frames, config, 0.5, seed=0)
    train = {f.sequence for f in frames if f.split == "train"}
    assert set(placed) <= train and 0.3 * len(train) < len(placed) < 0.7 * len(train)
    assert place_boxes(frames, config, 0.5, seed=0) == placed  # its own seeded stream
    assert place_boxes(frames, config, 0.0, seed=0) == {}
    assert set(place_boxes(frames, config, 1.0, seed=0)) == train  # every path finds a place here
    home = config.obstacles[MOVED_BOX_INDEX]
    room_lo, room_hi = np.asarray(config.room.lo), np.asarray(config.room.hi)
    for sequence, box in placed.items():
        lo, hi = np.asarray(box.lo), np.asarray(box.hi)
        np.testing.assert_allclose(hi - lo, np.subtract(home.hi, home.lo), atol=1e-5)  # the same box
        assert lo[2] == 0.0 and np.all(lo >= room_lo) and np.all(hi <= room_hi)
        bases = np.array([f.translation for f in frames if f.sequence == sequence])
        assert not np.any(box.contains(bases, MOVED_BOX_CLEARANCE))
        others = [(o, OBSTACLE_GAP) for i, o in enumerate(config.obstacles) if i != MOVED_BOX_INDEX]
        for other, gap in [*others, (MOVED_BOX, HELD_OUT_GAP)]:
            apart = [lo[k] >= other.hi[k] + gap or other.lo[k] >= hi[k] + gap for k in range(2)]
            assert any(apart), (box, other)

    # Moved, the box keeps its texel size, so every face keeps its texture: the same room (a face
    # one texel wider would draw every later texture anew). Sizes checked on every place drawn
    # here, whole textures on a few of the scenes.
    def texels(box: Box) -> list[int]:
        return [math.ceil((box.hi[k] - box.lo[k]) * config.px_per_m) for k in range(3)]

    for box in place_boxes(frames, config, 1.0, seed=1).values():
        assert texels(box) == texels(home), box
    home_scene = Scene(config)
    for box in list(placed.values())[:5]:
        moved_scene = Scene(with_moved_box(config, box))
        for home_texture, moved_texture in zip(home_scene.textures, moved_scene.textures, strict=True):
            np.testing.assert_array_equal(moved_texture, home_texture)
    with pytest.raises(ValueError, match=r"--movable-box must be a share in \[0, 1\], got 1.5"):
        place_boxes(frames, config, 1.5, seed=0)


def test_movable_box_changes_only_the_train_paths_it_moved(tmp_path: Path) -> None:
    args = ["synth", "--rig", "mono", "--width", "24", "--height", "18", "--frames", "200", "--quiet"]
    args += ["--frames-per-trajectory", "20", "--noise-std", "3", "--workers", "2"]
    assert main([*args, "--out", str(tmp_path / "nominal")]) == 0
    assert main([*args, "--out", str(tmp_path / "movable"), "--movable-box", "1"]) == 0
    nominal, movable = read_frames(tmp_path / "nominal"), read_frames(tmp_path / "movable")
    assert [(f.index, f.split, f.stamp_ns) for f in movable] == [
        (f.index, f.split, f.stamp_ns) for f in nominal
    ]
    record = read_metadata(tmp_path / "movable")["provenance"]["movable_box"]
    places = {int(k): v for k, v in record["places"].items()}
    assert record["share"] == 1.0 and record["index"] == MOVED_BOX_INDEX
    assert (
        record["moved_train_trajectories"]
        == len(places)
        == len({f.sequence for f in nominal if f.split == "train"})
    )
    assert "movable_box" not in read_metadata(tmp_path / "nominal")["provenance"]

    def same(frame_index: int) -> bool:
        return np.array_equal(
            cv2.imread(str(image_path(tmp_path / "nominal", "front", frame_index))),
            cv2.imread(str(image_path(tmp_path / "movable", "front", frame_index))),
        )

    # val and test: the room as it is, image for image; train: the box is seen elsewhere in some.
    assert all(same(f.index) for f in nominal if f.split != "train")
    train_same = [same(f.index) for f in nominal if f.split == "train"]
    assert sum(train_same) < len(train_same)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--condition", "foggy"], "argument --condition: invalid choice: 'foggy'"),
        (["--exclude-region", "x=1"], "a region is AXIS>METRES or AXIS<METRES"),
        (
            ["--condition", "camera_covered", "--covered-camera", "top"],
            "--covered-camera 'top' is not a camera",
        ),
        (["--exclude-region", "x>1", "--inside-region", "x>1"], "cannot be combined"),
        (["--movable-box", "2"], "--movable-box must be in [0, 1], got 2.0"),
        (["--movable-box", "0.5", "--condition", "box_moved"], "cannot be combined"),
        (["--movable-box", "half"], "argument --movable-box: must be a number >= 0, got 'half'"),
        (["--movable-box", "nan"], "argument --movable-box: must be a number >= 0, got 'nan'"),
        (["--frames", "2.5"], "argument --frames: must be a positive integer, got '2.5'"),
    ],
)
def test_bad_condition_options_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    args = ["synth", "--rig", "mono", "--width", "8", "--height", "6", "--frames", "3", "--quiet"]
    try:
        code = main([*args, "--out", str(tmp_path / "d"), *extra])
    except SystemExit as exc:  # argparse's own errors
        code = int(str(exc.code))
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "d").exists()
