"""`pose-train synth` end to end: dataset folder and bag, read back with rosbags and rclpy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from rclpy.serialization import deserialize_message
from rosbags.rosbag2 import Reader

from pose_regressor_training.cli import main
from pose_regressor_training.data.folder import image_path, read_frames, read_metadata, read_rig

SMALL_QUAD = ["synth", "--rig", "quad", "--frames", "30", "--width", "64", "--height", "48", "--seed", "3"]
SMALL_QUAD += ["--quiet"]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("synth")
    out, bag = root / "data", root / "test.bag"
    code = main([*SMALL_QUAD, "--out", str(out), "--bag", str(bag), "--workers", "2"])
    assert code == 0
    return out, bag


def test_the_bag_keeps_its_own_name_and_no_staging_is_left(rendered: tuple[Path, Path]) -> None:
    _, bag = rendered
    assert sorted(p.name for p in bag.iterdir()) == ["metadata.yaml", "test.bag.mcap"]
    assert sorted(p.name for p in bag.parent.iterdir()) == ["data", "test.bag"]


def test_dataset_folder_is_complete(rendered: tuple[Path, Path]) -> None:
    out, _ = rendered
    meta = read_metadata(out)
    assert meta["splits"] == {"train": 10, "val": 10, "test": 10}
    rig = read_rig(out)
    assert rig.names == ["front", "left", "back", "right"]
    frames = read_frames(out)
    assert [f.index for f in frames] == list(range(30))
    for f in frames:
        np.testing.assert_allclose(np.linalg.norm(f.quat_xyzw), 1.0, atol=1e-12)
        for cam in rig.names:
            img = cv2.imread(str(image_path(out, cam, f.index)))
            assert img is not None and img.shape == (48, 64, 3)


def test_bag_round_trips_through_rosbags_and_rclpy(rendered: tuple[Path, Path]) -> None:
    from geometry_msgs.msg import PoseStamped
    from sensor_msgs.msg import Image

    out, bag = rendered
    test_frames = {f.stamp_ns: f for f in read_frames(out) if f.split == "test"}
    seen: dict[str, int] = {}
    with Reader(bag) as reader:
        assert any(p.suffix == ".mcap" for p in bag.iterdir())
        topics = {c.topic: c.msgtype for c in reader.connections}
        assert topics == {
            "/front/image_raw": "sensor_msgs/msg/Image",
            "/left/image_raw": "sensor_msgs/msg/Image",
            "/back/image_raw": "sensor_msgs/msg/Image",
            "/right/image_raw": "sensor_msgs/msg/Image",
            "/ground_truth/pose": "geometry_msgs/msg/PoseStamped",
        }
        for conn, timestamp, raw in reader.messages():
            seen[conn.topic] = seen.get(conn.topic, 0) + 1
            if conn.msgtype == "sensor_msgs/msg/Image":
                msg = deserialize_message(bytes(raw), Image)
                stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
                assert stamp == timestamp and stamp in test_frames
                camera = conn.topic.split("/")[1]
                assert msg.header.frame_id == f"{camera}_optical_frame"
                assert (msg.encoding, msg.width, msg.height, msg.step) == ("rgb8", 64, 48, 192)
                pixels = np.frombuffer(bytes(msg.data), np.uint8).reshape(48, 64, 3)
                png = cv2.imread(str(image_path(out, camera, test_frames[stamp].index)))[..., ::-1]
                np.testing.assert_array_equal(pixels, png)
            else:
                pose = deserialize_message(bytes(raw), PoseStamped)
                frame = test_frames[pose.header.stamp.sec * 1_000_000_000 + pose.header.stamp.nanosec]
                assert pose.header.frame_id == "map"
                p, o = pose.pose.position, pose.pose.orientation
                np.testing.assert_allclose([p.x, p.y, p.z], frame.translation)
                np.testing.assert_allclose([o.x, o.y, o.z, o.w], frame.quat_xyzw)
    assert set(seen.values()) == {10}


def test_existing_output_is_not_overwritten_without_flag(rendered: tuple[Path, Path], capsys) -> None:  # type: ignore[no-untyped-def]
    out, _ = rendered
    before = (out / "frames.csv").read_text()
    assert main(["synth", "--out", str(out), "--frames", "3", "--quiet"]) == 2
    assert "use --overwrite" in capsys.readouterr().err
    assert (out / "frames.csv").read_text() == before


def test_cli_rejects_bad_arguments(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pose_regressor_training.cli",
            "synth",
            "--out",
            str(tmp_path / "x"),
            "--rig",
            "octo",
            "--frames",
            "3",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "unknown rig 'octo'" in result.stderr
    assert "Traceback" not in result.stderr


def test_single_worker_gives_identical_images(rendered: tuple[Path, Path], tmp_path: Path) -> None:
    out, _ = rendered
    again = tmp_path / "again"
    assert main([*SMALL_QUAD, "--out", str(again), "--workers", "1"]) == 0
    assert (again / "frames.csv").read_text() == (out / "frames.csv").read_text()
    for index in (0, 17, 29):
        a = cv2.imread(str(image_path(out, "back", index)))
        b = cv2.imread(str(image_path(again, "back", index)))
        np.testing.assert_array_equal(a, b)
