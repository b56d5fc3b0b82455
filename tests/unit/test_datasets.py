"""Benchmark loaders (7-Scenes, Cambridge Landmarks) and `load_dataset` on tiny hand-made fixtures.

Expected poses are worked out by hand from the frame conventions, not with the loaders' code:
`base_link` is REP-103 (x forward, y left, z up), the optical frame x right, y down, z forward.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from pose_regressor.rig import R_BASE_OPTICAL_FORWARD
from pose_regressor_training.data.dataset import PoseDataset
from pose_regressor_training.data.folder import DatasetFormatError
from pose_regressor_training.data.sources import load_dataset

S = math.sqrt(0.5)
RGB = (200, 40, 90)  # written as BGR by cv2; must come back as this RGB triple

# Camera looking along world +y, level with world z up: optical z -> +y, x (right) -> +x, y (down) -> -z.
# Its base_link then has x forward = +y, y left = -x, z up = +z: a +90° yaw, q_xyzw = (0, 0, S, S).
R_WORLD_CAM_NORTH = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
Q_BASE_NORTH = np.array([0.0, 0.0, S, S])
# Camera looking along world +x, level: its base_link is the world frame, q = identity.
R_WORLD_CAM_EAST = R_BASE_OPTICAL_FORWARD
Q_IDENTITY = np.array([0.0, 0.0, 0.0, 1.0])


def write_png(path: Path, size: tuple[int, int] = (40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.empty((size[1], size[0], 3), dtype=np.uint8)
    image[:] = RGB[::-1]
    assert cv2.imwrite(str(path), image)


def pose_text(rotation: np.ndarray, translation: np.ndarray) -> str:
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = rotation, translation
    return "\n".join("\t".join(f"{v:.7e}" for v in row) for row in m) + "\n"


def assert_pose(frame_t: np.ndarray, frame_q: np.ndarray, t: np.ndarray, q: np.ndarray) -> None:
    np.testing.assert_allclose(frame_t, t, atol=1e-6)
    np.testing.assert_allclose(frame_q, q, atol=1e-6)


# ---------------------------------------------------------------------------------------- 7-Scenes


@pytest.fixture
def seven_root(tmp_path: Path) -> Path:
    """ROOT/chess with seq-01 (2 frames), seq-02 (1 frame), seq-03 (1 frame); train = 1 and 3."""
    scene = tmp_path / "chess"
    poses = {
        1: [(R_WORLD_CAM_NORTH, [1.0, 2.0, 3.0]), (R_WORLD_CAM_EAST, [0.5, 0.0, 1.0])],
        2: [(R_WORLD_CAM_EAST, [-1.0, 0.0, 0.0])],
        3: [(R_WORLD_CAM_NORTH, [0.0, 0.0, 0.0])],
    }
    for seq, frames in poses.items():
        for i, (rot, trans) in enumerate(frames):
            stem = scene / f"seq-{seq:02d}" / f"frame-{i:06d}"
            write_png(stem.with_name(stem.name + ".color.png"))
            stem.with_name(stem.name + ".pose.txt").write_text(pose_text(rot, np.array(trans)))
    (scene / "TrainSplit.txt").write_text("sequence3\nsequence1\n\n")
    (scene / "TestSplit.txt").write_text("sequence2\r\n")
    return tmp_path


def test_seven_scenes_poses_splits_sequences_rig(seven_root: Path) -> None:
    train = load_dataset("7scenes", seven_root, "train", scene="chess")
    assert [f.sequence for f in train.frames] == [1, 1, 3]
    assert train.frames[0].image_paths == (seven_root / "chess" / "seq-01" / "frame-000000.color.png",)
    assert train.frames[1].stamp_ns - train.frames[0].stamp_ns == round(1e9 / 30)
    assert_pose(
        train.frames[0].translation, train.frames[0].quat_xyzw, np.array([1.0, 2.0, 3.0]), Q_BASE_NORTH
    )
    assert_pose(train.frames[1].translation, train.frames[1].quat_xyzw, np.array([0.5, 0.0, 1.0]), Q_IDENTITY)
    test = load_dataset("7scenes", seven_root, "test", scene="chess")
    assert [f.sequence for f in test.frames] == [2]
    assert_pose(test.frames[0].translation, test.frames[0].quat_xyzw, np.array([-1.0, 0.0, 0.0]), Q_IDENTITY)
    (cam,) = train.rig.cameras
    assert cam.name == "camera"
    assert (cam.intrinsics.width, cam.intrinsics.height, cam.intrinsics.fx, cam.intrinsics.cx) == (
        640,
        480,
        585,
        320,
    )
    np.testing.assert_allclose(cam.translation, 0.0)
    np.testing.assert_allclose(cam.rotation_matrix(), R_BASE_OPTICAL_FORWARD, atol=1e-12)


def test_seven_scenes_root_may_be_the_scene_folder(seven_root: Path) -> None:
    direct = load_dataset("7scenes", seven_root / "chess", "train")
    assert len(direct) == 3 and direct.metadata["scene"] == "chess"


def test_seven_scenes_accepts_slightly_non_orthonormal_rotation(seven_root: Path) -> None:
    noisy = R_WORLD_CAM_NORTH + np.array([[0.0, 4e-4, 0.0], [0.0, 0.0, -3e-4], [2e-4, 0.0, 0.0]])
    path = seven_root / "chess" / "seq-03" / "frame-000000.pose.txt"
    path.write_text(pose_text(noisy, np.zeros(3)))
    frame = load_dataset("7scenes", seven_root, "train", scene="chess").frames[-1]
    np.testing.assert_allclose(frame.quat_xyzw, Q_BASE_NORTH, atol=1e-3)
    assert np.linalg.norm(frame.quat_xyzw) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("1 0 0 0\n0 1 0 0\n0 0 1 0\n", "16 numbers"),
        ("1 0 0 0\n0 1 0 0\n0 0 1 zero\n0 0 0 1\n", "malformed"),
        ("1 0 0 0\n0 1 0 0\n0 0 -1 0\n0 0 0 1\n", "det"),
        ("1 0.2 0 0\n0 1 0 0\n0 0 1 0\n0 0 0 1\n", "orthonormal"),
    ],
)
def test_seven_scenes_malformed_pose_file_is_named(seven_root: Path, content: str, reason: str) -> None:
    path = seven_root / "chess" / "seq-01" / "frame-000001.pose.txt"
    path.write_text(content)
    with pytest.raises(DatasetFormatError, match=reason) as info:
        load_dataset("7scenes", seven_root, "train", scene="chess")
    assert str(path) in str(info.value)


def test_seven_scenes_split_errors(seven_root: Path) -> None:
    scene = seven_root / "chess"
    (scene / "TestSplit.txt").write_text("sequence2\nseq 4\n")
    with pytest.raises(DatasetFormatError, match=r"TestSplit\.txt:2: expected a line like 'sequence1'"):
        load_dataset("7scenes", seven_root, "test", scene="chess")
    (scene / "TestSplit.txt").unlink()
    with pytest.raises(DatasetFormatError, match=r"TestSplit\.txt does not exist"):
        load_dataset("7scenes", seven_root, "test", scene="chess")
    (scene / "TrainSplit.txt").write_text("sequence9\n")
    with pytest.raises(DatasetFormatError, match=r"TrainSplit\.txt:1: sequence folder .*seq-09"):
        load_dataset("7scenes", seven_root, "train", scene="chess")
    with pytest.raises(DatasetFormatError, match="no validation split"):
        load_dataset("7scenes", seven_root, "val", scene="chess")
    with pytest.raises(DatasetFormatError, match=r"scenes: chess"):
        load_dataset("7scenes", seven_root, "train", scene="fire")
    with pytest.raises(DatasetFormatError, match=r"give scene= \(scenes found: chess\)"):
        load_dataset("7scenes", seven_root, "train")


def test_seven_scenes_missing_image_is_named(seven_root: Path) -> None:
    image = seven_root / "chess" / "seq-03" / "frame-000000.color.png"
    image.unlink()
    with pytest.raises(DatasetFormatError, match=r"frame-000000\.color\.png is missing"):
        load_dataset("7scenes", seven_root, "train", scene="chess")
    assert len(load_dataset("7scenes", seven_root, "train", scene="chess", check_images=False)) == 3


def test_pose_dataset_over_seven_scenes(seven_root: Path) -> None:
    frames = load_dataset("7scenes", seven_root, "train", scene="chess")
    data = PoseDataset(frames, image_size=(32, 24), preload=True, progress=False)
    sample = data[0]
    assert sample["images"].shape == (1, 24, 32, 3) and sample["images"].dtype == torch.uint8
    assert torch.all(sample["images"] == torch.tensor(RGB, dtype=torch.uint8))
    assert sample["t"].dtype == torch.float32 and sample["q"].dtype == torch.float32
    torch.testing.assert_close(sample["t"], torch.tensor([1.0, 2.0, 3.0]))
    torch.testing.assert_close(sample["q"], torch.tensor(Q_BASE_NORTH, dtype=torch.float32))
    assert int(data[2]["sequence"]) == 3 and int(data[2]["index"]) == 2
    assert int(data[1]["stamp_ns"]) == round(1e9 / 30)


# ----------------------------------------------------------------------------------------- Cambridge

HEADER = "Visual Landmark Dataset V1\nImageFile, Camera Position [X Y Z W P Q R]\n\n"


def cambridge_line(image: str, centre: tuple[float, float, float], wxyz: tuple[float, ...]) -> str:
    return f"{image} {' '.join(map(str, centre))} {' '.join(map(str, wxyz))}\n"


@pytest.fixture
def cambridge_root(tmp_path: Path) -> Path:
    """The hand-made quaternions are R_cam_world (world -> camera), scalar first:

    * NORTH: R_world_cam = R_WORLD_CAM_NORTH = Rx(-90°) (columns: right = +x, down = -z,
      forward = +y), so R_cam_world = Rx(+90°), wxyz = (cos 45°, sin 45°, 0, 0).
    * EAST: R_world_cam = R_BASE_OPTICAL_FORWARD, whose xyzw is (-1/2, 1/2, -1/2, 1/2) (the rig
      docstring's forward camera); R_cam_world is its conjugate, xyzw (1/2, -1/2, 1/2, 1/2),
      i.e. wxyz (1/2, 1/2, -1/2, 1/2).  Written once more with all signs flipped (same rotation).
    """
    root = tmp_path / "ShopFacade"
    north = (S, S, 0.0, 0.0)
    east = (0.5, 0.5, -0.5, 0.5)
    train = [
        cambridge_line("seq2/frame00007.png", (4.0, 5.0, 6.0), east),
        cambridge_line("seq1/frame00002.png", (-1.0, 0.0, 2.5), tuple(-v for v in east)),
        cambridge_line("seq1/frame00001.png", (1.0, 2.0, 3.0), north),
    ]
    (root).mkdir()
    (root / "dataset_train.txt").write_text(HEADER + "".join(train))
    (root / "dataset_test.txt").write_text(HEADER + cambridge_line("seq3/frame00010.png", (0, 0, 0), north))
    for name in ("seq1/frame00001.png", "seq1/frame00002.png", "seq2/frame00007.png", "seq3/frame00010.png"):
        write_png(root / name, (96, 54))
    return root


def test_cambridge_hand_made_poses(cambridge_root: Path) -> None:
    train = load_dataset("cambridge", cambridge_root, "train")
    # Sorted by sequence then frame number.
    assert [(f.sequence, f.image_paths[0].name) for f in train.frames] == [
        (1, "frame00001.png"),
        (1, "frame00002.png"),
        (2, "frame00007.png"),
    ]
    north, east_flipped, east = train.frames
    # Camera at (1, 2, 3) looking along world +y: base at the camera centre, base x = world +y.
    assert_pose(north.translation, north.quat_xyzw, np.array([1.0, 2.0, 3.0]), Q_BASE_NORTH)
    r_map_base = _matrix(north.quat_xyzw)
    np.testing.assert_allclose(r_map_base[:, 0], [0, 1, 0], atol=1e-6)  # forward = world +y
    np.testing.assert_allclose(r_map_base[:, 1], [-1, 0, 0], atol=1e-6)  # left = world -x
    np.testing.assert_allclose(r_map_base[:, 2], [0, 0, 1], atol=1e-6)  # up = world +z
    assert_pose(east.translation, east.quat_xyzw, np.array([4.0, 5.0, 6.0]), Q_IDENTITY)
    assert_pose(east_flipped.translation, east_flipped.quat_xyzw, np.array([-1.0, 0.0, 2.5]), Q_IDENTITY)
    assert north.image_paths == (cambridge_root / "seq1" / "frame00001.png",)
    assert east.stamp_ns == round(7 * 1e9 / 2.0)
    assert train.metadata["sequences"] == [1, 2]
    test = load_dataset("cambridge", cambridge_root, "test")
    assert [f.sequence for f in test.frames] == [3]


def test_cambridge_rig_intrinsics_scale_with_image_width(cambridge_root: Path) -> None:
    (cam,) = load_dataset("cambridge", cambridge_root, "train").rig.cameras
    intr = cam.intrinsics
    assert (intr.width, intr.height) == (96, 54)  # read from the first image
    assert intr.fx == pytest.approx(1677.5 * 96 / 1920) and intr.fy == intr.fx
    assert (intr.cx, intr.cy) == (48.0, 27.0)
    np.testing.assert_allclose(cam.rotation_matrix(), R_BASE_OPTICAL_FORWARD, atol=1e-12)
    given = load_dataset("cambridge", cambridge_root, "train", image_size=(1920, 1080), focal_px_1920=1600.0)
    assert given.rig.cameras[0].intrinsics.fx == pytest.approx(1600.0)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("seq1/frame00003.png 1 2 3 1 0 0\n", "8 fields"),
        ("seq1/frame00003.png 1 2 three 1 0 0 0\n", "must be numbers"),
        ("seq1/frame00003.png 1 2 3 2 0 0 0\n", "norm 2"),
        ("seq1/frame00003.png 1 2 3 nan 0 0 0\n", "finite"),
        ("frames/frame00003.png 1 2 3 1 0 0 0\n", "no 'seqN' folder"),
        ("seq1/frame00009.png 1 2 3 1 0 0 0\n", "frame00009.png does not exist"),
    ],
)
def test_cambridge_malformed_line_names_file_and_line(cambridge_root: Path, line: str, reason: str) -> None:
    path = cambridge_root / "dataset_train.txt"
    path.write_text(path.read_text() + line)
    with pytest.raises(DatasetFormatError, match=reason) as info:
        load_dataset("cambridge", cambridge_root, "train")
    assert f"{path}:7" in str(info.value)


def test_cambridge_missing_split_file_and_val(cambridge_root: Path) -> None:
    (cambridge_root / "dataset_test.txt").unlink()
    with pytest.raises(DatasetFormatError, match=r"dataset_test\.txt does not exist"):
        load_dataset("cambridge", cambridge_root, "test")
    with pytest.raises(DatasetFormatError, match="no validation split"):
        load_dataset("cambridge", cambridge_root, "val")


def test_pose_dataset_over_cambridge(cambridge_root: Path) -> None:
    data = PoseDataset(
        load_dataset("cambridge", cambridge_root, "train"), (32, 24), preload=True, progress=False
    )
    batch = torch.stack([data[i]["images"] for i in range(len(data))])
    assert batch.shape == (3, 1, 24, 32, 3)
    assert torch.all(batch == torch.tensor(RGB, dtype=torch.uint8))
    torch.testing.assert_close(data[2]["q"], torch.tensor(Q_IDENTITY, dtype=torch.float32))
    assert [int(data[i]["sequence"]) for i in range(3)] == [1, 1, 2]


# ------------------------------------------------------------------------------------- load_dataset


def test_load_dataset_rejects_unknown_kind_options_and_splits(tmp_path: Path, seven_root: Path) -> None:
    with pytest.raises(
        ValueError, match=r"unknown dataset kind 'kitti'; choose one of folder, 7scenes, cambridge"
    ):
        load_dataset("kitti", tmp_path, "train")
    with pytest.raises(ValueError, match=r"unknown option\(s\) focal_px_1920 for dataset kind '7scenes'"):
        load_dataset("7scenes", seven_root, "train", scene="chess", focal_px_1920=1.0)
    with pytest.raises(
        ValueError, match=r"unknown option\(s\) scene for dataset kind 'folder' \(valid: none\)"
    ):
        load_dataset("folder", tmp_path, "train", scene="chess")
    with pytest.raises(DatasetFormatError, match="folder split must be one of train, val, test"):
        load_dataset("folder", tmp_path, "all")
    with pytest.raises(DatasetFormatError, match="split must be one of train, test, got 'dev'"):
        load_dataset("cambridge", tmp_path, "dev")


def test_load_dataset_folder_kind(tmp_path: Path) -> None:
    from pose_regressor.rig import preset_rig
    from pose_regressor_training.data.folder import FrameRecord, image_path, write_frames, write_metadata

    rig = preset_rig("stereo", 32, 24)
    records = [
        FrameRecord(i, 0, split, i * 100, np.array([float(i), 0.0, 0.0]), Q_IDENTITY)
        for i, split in enumerate(["train", "val", "train"])
    ]
    write_metadata(tmp_path, rig, 10.0, {"train": 2, "val": 1}, {})
    write_frames(tmp_path, records)
    frames = load_dataset("folder", tmp_path, "train")
    assert [f.translation[0] for f in frames.frames] == [0.0, 2.0]
    assert frames.frames[1].image_paths == tuple(image_path(tmp_path, c, 2) for c in rig.names)
    assert len(load_dataset("folder", tmp_path, "val")) == 1


def _matrix(q_xyzw: np.ndarray) -> np.ndarray:
    x, y, z, w = q_xyzw
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )
