"""`pose-train from-bag`: bags written with rosbags -> dataset folder; poses, counts, images, errors."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml
from numpy.typing import NDArray
from rosbags.rosbag2 import StoragePlugin, Writer
from scipy.spatial.transform import Rotation, Slerp

from pose_regressor.bagio import TYPESTORE, RigBagWriter, pose_message, stamp_from_ns
from pose_regressor.rig import Rig
from pose_regressor_training.cli import main
from pose_regressor_training.data.folder import image_path, read_frames, read_metadata, read_rig
from pose_regressor_training.data.from_bag import (
    BagConversionError,
    DropReason,
    FromBagConfig,
    GroundTruthTrack,
    convert_bag,
)

MS = 1_000_000
T0 = 1_700_000_000 * 1_000_000_000
W, H = 16, 12
U8 = NDArray[np.uint8]
F64 = NDArray[np.float64]


def textured(seed: int) -> U8:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def smooth(seed: int) -> U8:
    """A gentle gradient (survives JPEG almost unchanged)."""
    y, x = np.mgrid[0:H, 0:W]
    base = np.stack([8 * x + seed, 10 * y + 2 * seed, 0 * x + 90 + 3 * seed], axis=-1)
    return np.clip(base, 0, 255).astype(np.uint8)


def gt_pose(j: int) -> tuple[F64, F64]:
    """Ground-truth sample j: a wandering translation, ~40 degrees of rotation per sample."""
    t = np.array([0.5 * j, np.sin(j), 0.1 * j * j])
    q = Rotation.from_rotvec(
        np.radians(40.0) * j * np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8])
    )
    quat = q.as_quat()
    return t, quat if quat[3] >= 0 else -quat


def expected_pose(stamp: int, gt_stamps: list[int]) -> tuple[F64, F64]:
    """Linear translation + scipy slerp between the bracketing samples (independent of the code)."""
    hi = next(k for k, s in enumerate(gt_stamps) if s >= stamp)
    if gt_stamps[hi] == stamp:
        return gt_pose(hi)
    lo = hi - 1
    alpha = (stamp - gt_stamps[lo]) / (gt_stamps[hi] - gt_stamps[lo])
    (t_lo, q_lo), (t_hi, q_hi) = gt_pose(lo), gt_pose(hi)
    slerp = Slerp([0.0, 1.0], Rotation.from_quat([q_lo, q_hi]))
    quat = slerp([alpha]).as_quat()[0]
    return t_lo + alpha * (t_hi - t_lo), quat if quat[3] >= 0 else -quat


def write_rig(path: Path, names: list[str], width: int = W, height: int = H) -> Path:
    cams = [
        {"name": n, "width": width, "height": height, "hfov_deg": 80.0, "yaw_deg": 90.0 * i}
        for i, n in enumerate(names)
    ]
    path.write_text(yaml.safe_dump({"cameras": cams}))
    return path


# --------------------------------------------------------------------------- bag A: RigBagWriter

A_SETS = [T0 + k * 100 * MS for k in range(12)]  # images at 0, 100, ..., 1100 ms
A_GT = [T0 + (150 + 250 * j) * MS for j in range(5)]  # 150, 400, ..., 1150 ms: 4 Hz, after the first images


@pytest.fixture(scope="module")
def bag_a(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bag_a")
    events: list[tuple[int, int, int]] = [(s, 0, k) for k, s in enumerate(A_SETS)]
    events += [(s, 1, j) for j, s in enumerate(A_GT)]
    with RigBagWriter(root / "a", ["left", "right"]) as writer:
        for stamp, is_gt, k in sorted(events):
            if is_gt:
                writer.write_ground_truth(stamp, *gt_pose(k))
            else:
                writer.write_set(stamp, [textured(2 * k), textured(2 * k + 1)])
    write_rig(root / "rig.yaml", ["left", "right"])
    return root


def a_config(bag_a: Path, out: Path, **kwargs: Any) -> FromBagConfig:
    return FromBagConfig(
        bag=bag_a / "a",
        camera_topics=("/left/image_raw", "/right/image_raw"),
        gt_topic="/ground_truth/pose",
        rig=Rig.from_yaml(bag_a / "rig.yaml"),
        out=out,
        max_gt_gap_ns=kwargs.pop("max_gt_gap_ns", 300 * MS),
        progress=False,
        **kwargs,
    )


def test_image_and_pose_stamped_bag(bag_a: Path, tmp_path: Path) -> None:
    out = tmp_path / "data"
    summary = convert_bag(a_config(bag_a, out))
    inside = [s for s in A_SETS if A_GT[0] <= s <= A_GT[-1]]
    assert len(inside) == 10
    assert (summary.sets_written, summary.dropped_outside_gt, summary.dropped_gt_gap) == (10, 2, 0)
    assert (summary.unsynchronized_frames, summary.camera_frames, summary.gt_messages) == (0, 24, 5)
    frames = read_frames(out)
    assert [f.stamp_ns for f in frames] == inside
    assert [f.index for f in frames] == list(range(10))
    # the default split: 10 blocks of one set (fewer than 20 sets), every 5th test, the next val,
    # each block its own sequence, as `pose-train import` cuts a recording
    letters = {"train": "T", "val": "v", "test": "s"}
    assert "".join(letters[f.split] for f in frames) == "TTTTsvTTTs"
    assert [f.sequence for f in frames] == list(range(10))
    for f in frames:
        t, q = expected_pose(f.stamp_ns, A_GT)
        np.testing.assert_allclose(f.translation, t, atol=1e-9)
        np.testing.assert_allclose(f.quat_xyzw, q, atol=1e-9)
        k = A_SETS.index(f.stamp_ns)
        for cam, seed in (("left", 2 * k), ("right", 2 * k + 1)):
            png = cv2.imread(str(image_path(out, cam, f.index)))
            np.testing.assert_array_equal(png[..., ::-1], textured(seed))
    meta = read_metadata(out)
    assert meta["splits"] == {"train": 7, "val": 1, "test": 2}
    assert summary.frames_per_split == meta["splits"]
    assert meta["fps"] == pytest.approx(10.0)
    prov = meta["provenance"]
    assert prov["camera_topics"] == ["/left/image_raw", "/right/image_raw"]
    assert prov["gt_topic"] == "/ground_truth/pose" and prov["gt_frame_id"] == "map"
    assert prov["bag"] == str((bag_a / "a").resolve())
    assert prov["counts"]["dropped_outside_gt"] == 2 and prov["counts"]["sets_written"] == 10
    assert prov["split_policy"] == {"blocks": 10, "test_every": 5, "val": True} and "split" not in prov
    assert read_rig(out).names == ["left", "right"]


def test_default_gap_drops_the_4_hz_ground_truth(bag_a: Path, tmp_path: Path) -> None:
    summary = convert_bag(a_config(bag_a, tmp_path / "data", max_gt_gap_ns=249 * MS, split="train"))
    # Only the sets at 400 and 900 ms coincide with ground-truth stamps and keep their poses.
    assert (summary.sets_written, summary.dropped_outside_gt, summary.dropped_gt_gap) == (2, 2, 8)
    frames = read_frames(tmp_path / "data")
    assert [f.stamp_ns for f in frames] == [A_GT[1], A_GT[3]]
    np.testing.assert_allclose(frames[1].translation, gt_pose(3)[0])


def test_cli_resizes_and_prints_a_summary(
    bag_a: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "small"
    args = ["from-bag", "--bag", str(bag_a / "a"), "--camera-topics", "/left/image_raw", "/right/image_raw"]
    args += ["--gt-topic", "/ground_truth/pose", "--rig", str(bag_a / "rig.yaml"), "--out", str(out)]
    args += ["--size", "8x6", "--split", "test", "--max-gt-gap-ms", "300", "--quiet"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert re.search(r"sets written: +10 \(train 0, val 0, test 10\)\n", printed)
    assert re.search(r"dropped outside GT range: +2\n", printed)
    assert re.search(r"dropped across GT gaps: +0\n", printed)
    assert re.search(r"unsynchronized frames: +0 \(of 24 camera frames\)\n", printed)
    rig = read_rig(out)
    original = Rig.from_yaml(bag_a / "rig.yaml")
    for cam, orig in zip(rig.cameras, original.cameras, strict=True):
        assert (cam.intrinsics.width, cam.intrinsics.height) == (8, 6)
        assert cam.intrinsics.fx == pytest.approx(orig.intrinsics.fx / 2)
        np.testing.assert_allclose(cam.rotation_xyzw, orig.rotation_xyzw)
    image = cv2.imread(str(image_path(out, "right", 3)))
    assert image.shape == (6, 8, 3)
    assert read_metadata(out)["splits"] == {"train": 0, "val": 0, "test": 10}
    assert read_metadata(out)["provenance"]["split"] == "test"
    # Again into the same folder: refused without --overwrite, replaced with it.
    assert main(args) == 2
    assert "use --overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0


# --------------------------------------------------------------------------- bags built by hand


def header(stamp: int, frame_id: str) -> Any:
    return TYPESTORE.types["std_msgs/msg/Header"](stamp=stamp_from_ns(stamp), frame_id=frame_id)


def compressed_message(stamp: int, image: U8, fmt: str) -> Any:
    ext = ".png" if "png" in fmt else ".jpg"
    ok, buf = cv2.imencode(ext, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert ok
    return TYPESTORE.types["sensor_msgs/msg/CompressedImage"](
        header=header(stamp, "cam_optical_frame"), format=fmt, data=buf.reshape(-1)
    )


def padded_bgr8_message(stamp: int, image: U8, pad: int = 5) -> Any:
    rows = np.zeros((H, W * 3 + pad), np.uint8)
    rows[:, : W * 3] = image[..., ::-1].reshape(H, -1)
    return TYPESTORE.types["sensor_msgs/msg/Image"](
        header=header(stamp, "cam_optical_frame"),
        height=H,
        width=W,
        encoding="bgr8",
        is_bigendian=0,
        step=W * 3 + pad,
        data=rows.reshape(-1),
    )


def gt_message(msgtype: str, stamp: int, t: F64, q: F64) -> Any:
    types = TYPESTORE.types
    point = types["geometry_msgs/msg/Point"](x=t[0], y=t[1], z=t[2])
    rot = types["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3])
    pose = types["geometry_msgs/msg/Pose"](position=point, orientation=rot)
    with_cov = types["geometry_msgs/msg/PoseWithCovariance"](pose=pose, covariance=np.zeros(36))
    if msgtype == "nav_msgs/msg/Odometry":
        zero = types["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0)
        twist = types["geometry_msgs/msg/Twist"](linear=zero, angular=zero)
        return types[msgtype](
            header=header(stamp, "map"),
            child_frame_id="base_link",
            pose=with_cov,
            twist=types["geometry_msgs/msg/TwistWithCovariance"](twist=twist, covariance=np.zeros(36)),
        )
    if msgtype == "geometry_msgs/msg/PoseWithCovarianceStamped":
        return types[msgtype](header=header(stamp, "map"), pose=with_cov)
    if msgtype == "geometry_msgs/msg/TransformStamped":
        vec = types["geometry_msgs/msg/Vector3"](x=t[0], y=t[1], z=t[2])
        transform = types["geometry_msgs/msg/Transform"](translation=vec, rotation=rot)
        return types[msgtype](header=header(stamp, "map"), child_frame_id="base_link", transform=transform)
    return pose_message(stamp, "map", t, q)


@dataclass
class Message:
    topic: str
    msgtype: str
    log_time: int
    msg: Any


def write_bag(
    path: Path, messages: list[Message], storage: StoragePlugin, silent: tuple[tuple[str, str], ...] = ()
) -> None:
    """A bag of `messages`, plus (topic, type) connections in `silent` that carry no message."""
    writer = Writer(path, version=9, storage_plugin=storage)
    writer.open()
    connections: dict[str, Any] = {
        topic: writer.add_connection(topic, msgtype, typestore=TYPESTORE) for topic, msgtype in silent
    }
    for m in sorted(messages, key=lambda m: m.log_time):
        if m.topic not in connections:
            connections[m.topic] = writer.add_connection(m.topic, m.msgtype, typestore=TYPESTORE)
        writer.write(connections[m.topic], m.log_time, TYPESTORE.serialize_cdr(m.msg, m.msgtype))
    writer.close()


# Bag B: two CompressedImage cameras (PNG and JPEG; cam_b stamped 3 ms later) at 10 Hz,
# Odometry at 5 Hz starting after the first image, with a 600 ms hole.
B_SETS = [T0 + k * 100 * MS for k in range(16)]  # 0 .. 1500 ms
B_GT = [T0 + s * MS for s in (50, 250, 450, 1050, 1250, 1450)]
COMPRESSED = "sensor_msgs/msg/CompressedImage"
ODOM = "nav_msgs/msg/Odometry"


@pytest.fixture(scope="module")
def bag_b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bag_b")
    msgs = []
    for k, stamp in enumerate(B_SETS):
        msgs.append(
            Message(
                "/cam_a/image_raw/compressed",
                COMPRESSED,
                stamp,
                compressed_message(stamp, textured(k), "png"),
            )
        )
        b_stamp = stamp + 3 * MS
        b_msg = compressed_message(b_stamp, smooth(k), "rgb8; jpeg compressed bgr8")
        msgs.append(Message("/cam_b/image_raw/compressed", COMPRESSED, b_stamp + 1 * MS, b_msg))
    # Two frames that never find a partner: a stray cam_b frame between sets, a last cam_a frame.
    stray = T0 + 730 * MS
    msgs.append(
        Message(
            "/cam_b/image_raw/compressed", COMPRESSED, stray, compressed_message(stray, smooth(99), "jpeg")
        )
    )
    last = T0 + 1550 * MS
    msgs.append(
        Message(
            "/cam_a/image_raw/compressed", COMPRESSED, last, compressed_message(last, textured(99), "png")
        )
    )
    for j, stamp in enumerate(B_GT):
        msgs.append(Message("/odom", ODOM, stamp + 2 * MS, gt_message(ODOM, stamp, *gt_pose(j))))
    write_bag(root / "b", msgs, StoragePlugin.SQLITE3)
    write_rig(root / "rig.yaml", ["cam_a", "cam_b"])
    return root


def test_compressed_images_and_odometry_with_a_gap(bag_b: Path, tmp_path: Path) -> None:
    out = tmp_path / "data"
    cfg = FromBagConfig(
        bag=bag_b / "b",
        camera_topics=("/cam_a/image_raw/compressed", "/cam_b/image_raw/compressed"),
        gt_topic="/odom",
        rig=Rig.from_yaml(bag_b / "rig.yaml"),
        out=out,
        max_gt_gap_ns=250 * MS,
        split="val",
        progress=False,
    )
    summary = convert_bag(cfg)
    written = [T0 + s * MS for s in (100, 200, 300, 400, 1100, 1200, 1300, 1400)]
    assert (summary.sets_written, summary.dropped_outside_gt, summary.dropped_gt_gap) == (8, 2, 6)
    assert (summary.unsynchronized_frames, summary.camera_frames, summary.gt_messages) == (2, 34, 6)
    frames = read_frames(out)
    assert [f.stamp_ns for f in frames] == written
    for f in frames:
        t, q = expected_pose(f.stamp_ns, B_GT)
        np.testing.assert_allclose(f.translation, t, atol=1e-9)
        np.testing.assert_allclose(f.quat_xyzw, q, atol=1e-9)
        assert f.quat_xyzw[3] >= 0 and f.split == "val"
        k = B_SETS.index(f.stamp_ns)
        a = cv2.imread(str(image_path(out, "cam_a", f.index)))[..., ::-1]
        np.testing.assert_array_equal(a, textured(k))
        b = cv2.imread(str(image_path(out, "cam_b", f.index)))[..., ::-1]
        assert np.abs(b.astype(int) - smooth(k)).mean() < 3.0
    prov = read_metadata(out)["provenance"]
    assert prov["gt_type"] == ODOM and prov["gt_child_frame_id"] == "base_link"
    assert prov["camera_types"] == [COMPRESSED, COMPRESSED]
    assert prov["counts"] == {
        "camera_frames": 34,
        "gt_messages": 6,
        "sets_synchronized": 16,
        "sets_written": 8,
        "dropped_outside_gt": 2,
        "dropped_gt_gap": 6,
        "unsynchronized_frames": 2,
        "stamp_resets": 0,
    }


def test_cameras_that_never_synchronize_are_explained_with_counts(
    bag_b: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # cam_b is stamped 3 ms after cam_a: a 2 ms slop never forms a set.
    out = tmp_path / "data"
    args = ["from-bag", "--bag", str(bag_b / "b"), "--rig", str(bag_b / "rig.yaml"), "--out", str(out)]
    args += ["--camera-topics", "/cam_a/image_raw/compressed", "/cam_b/image_raw/compressed"]
    args += ["--gt-topic", "/odom", "--slop-ms", "2", "--quiet"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"pose-train from-bag: error: the cameras never synchronized in {bag_b / 'b'}: ")
    assert (
        "messages per camera topic: /cam_a/image_raw/compressed 17, /cam_b/image_raw/compressed 17; "
        "sets formed: 0; the smallest stamp spread seen is 3.000 ms but the slop is 2 ms "
        "(raise --slop-ms above 3.000" in err
    )
    assert not out.exists() and list(tmp_path.iterdir()) == []  # no partial output, no staging folder


def one_camera_bag(path: Path, image_stamps: list[int], gt_stamps: list[int]) -> None:
    """Images on /front/image_raw (declared without messages when there are none), PoseStamped on /gt."""
    msgs = [
        Message("/gt", "geometry_msgs/msg/PoseStamped", s, pose_message(s, "map", *gt_pose(k)))
        for k, s in enumerate(gt_stamps)
    ]
    msgs += [
        Message("/front/image_raw", "sensor_msgs/msg/Image", s, padded_bgr8_message(s, textured(k)))
        for k, s in enumerate(image_stamps)
    ]
    silent = () if image_stamps else (("/front/image_raw", "sensor_msgs/msg/Image"),)
    write_bag(path, msgs, StoragePlugin.MCAP, silent)


def mono_config(bag: Path, out: Path, rig: Path, **kwargs: Any) -> FromBagConfig:
    """One split: these bags hold a few sets, fewer than the default blocks need."""
    return FromBagConfig(
        bag=bag,
        camera_topics=("/front/image_raw",),
        gt_topic="/gt",
        rig=Rig.from_yaml(rig),
        out=out,
        split=kwargs.pop("split", "train"),
        progress=False,
        **kwargs,
    )


def test_ground_truth_outside_the_images_time_range_is_explained(tmp_path: Path) -> None:
    images = [T0 + k * 50 * MS for k in range(4)]  # 0 .. 150 ms
    gt = [T0 + 10_000 * MS + k * 50 * MS for k in range(3)]  # 10 s later: another clock?
    one_camera_bag(tmp_path / "bag", images, gt)
    rig = write_rig(tmp_path / "rig.yaml", ["front"])
    with pytest.raises(BagConversionError) as caught:
        convert_bag(mono_config(tmp_path / "bag", tmp_path / "out", rig))
    t0 = T0 / 1e9
    assert str(caught.value) == (
        "all 4 synchronized set(s) lie outside the ground-truth time range: ground truth "
        f"[{t0 + 10:.3f}, {t0 + 10.1:.3f}] s (3 messages on /gt), image sets [{t0:.3f}, {t0 + 0.15:.3f}] s; "
        "the images end 9.850 s before the ground truth starts (are both stamped with the same clock?)"
    )
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag", "rig.yaml"]


@pytest.mark.parametrize(("x", "why"), [(float("nan"), "the position is not finite"), (2e8, "beyond")])
def test_a_ground_truth_position_a_dataset_folder_refuses_stops_the_conversion(
    x: float, why: str, tmp_path: Path
) -> None:
    stamps = [T0 + k * 50 * MS for k in range(4)]
    msgs = [
        Message("/gt", "geometry_msgs/msg/PoseStamped", s, pose_message(s, "map", *gt_pose(k)))
        for k, s in enumerate(stamps)
    ]
    far = gt_pose(2)[0].copy()
    far[0] = x
    msgs[2] = Message(
        "/gt", "geometry_msgs/msg/PoseStamped", stamps[2], pose_message(stamps[2], "map", far, gt_pose(2)[1])
    )
    msgs += [
        Message("/front/image_raw", "sensor_msgs/msg/Image", s, padded_bgr8_message(s, textured(k)))
        for k, s in enumerate(stamps)
    ]
    write_bag(tmp_path / "bag", msgs, StoragePlugin.MCAP)
    rig = write_rig(tmp_path / "rig.yaml", ["front"])
    with pytest.raises(BagConversionError) as caught:
        convert_bag(mono_config(tmp_path / "bag", tmp_path / "out", rig))
    message = str(caught.value)
    assert message.startswith("ground-truth message 2 on /gt is invalid: ") and why in message, message
    if x > 0:
        assert message.endswith("the position (2e+08, 0.909297, 0.4) is beyond ±1e+08 from the map's origin")
    assert not (tmp_path / "out").exists()


def test_failed_overwrite_keeps_the_existing_dataset(tmp_path: Path) -> None:
    images = [T0 + k * 50 * MS for k in range(4)]
    one_camera_bag(tmp_path / "good", images, images)
    one_camera_bag(tmp_path / "bad", images, [s + 60_000 * MS for s in images])
    rig = write_rig(tmp_path / "rig.yaml", ["front"])
    out = tmp_path / "out"
    assert convert_bag(mono_config(tmp_path / "good", out, rig)).sets_written == 4
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(BagConversionError, match=r"the images end 59\.850 s before the ground truth starts"):
        convert_bag(mono_config(tmp_path / "bad", out, rig, overwrite=True))
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "good", "out", "rig.yaml"]


def test_a_camera_topic_without_messages_is_named(tmp_path: Path) -> None:
    one_camera_bag(tmp_path / "bag", [], [T0 + k * 50 * MS for k in range(3)])
    rig = write_rig(tmp_path / "rig.yaml", ["front"])
    with pytest.raises(BagConversionError) as caught:
        convert_bag(mono_config(tmp_path / "bag", tmp_path / "out", rig))
    assert str(caught.value) == (
        f"camera topic(s) /front/image_raw have no messages in {tmp_path / 'bag'} "
        "(messages per camera topic: /front/image_raw 0); no set can be formed"
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "gt_type", ["geometry_msgs/msg/PoseWithCovarianceStamped", "geometry_msgs/msg/TransformStamped"]
)
def test_other_ground_truth_types_and_padded_raw_images(gt_type: str, tmp_path: Path) -> None:
    stamps = [T0 + k * 50 * MS for k in range(4)]
    msgs = [
        Message("/front/image_raw", "sensor_msgs/msg/Image", s, padded_bgr8_message(s, textured(k)))
        for k, s in enumerate(stamps)
    ]
    msgs += [Message("/gt", gt_type, s, gt_message(gt_type, s, *gt_pose(k))) for k, s in enumerate(stamps)]
    write_bag(tmp_path / "bag", msgs, StoragePlugin.MCAP)
    cfg = FromBagConfig(
        bag=tmp_path / "bag",
        camera_topics=("/front/image_raw",),
        gt_topic="/gt",
        rig=Rig.from_yaml(write_rig(tmp_path / "rig.yaml", ["front"])),
        out=tmp_path / "data",
        split="train",
        progress=False,
    )
    assert convert_bag(cfg).sets_written == 4
    for k, f in enumerate(read_frames(tmp_path / "data")):
        t, q = gt_pose(k)
        np.testing.assert_allclose(f.translation, t, atol=1e-12)
        np.testing.assert_allclose(f.quat_xyzw, q, atol=1e-12)
        png = cv2.imread(str(image_path(tmp_path / "data", "front", k)))
        np.testing.assert_array_equal(png[..., ::-1], textured(k))


# --------------------------------------------------------------------------- interpolation


def test_ground_truth_track_interpolation_rules() -> None:
    stamps = [300, 100, 200, 200]  # unsorted, with a repeated stamp (the first is kept)
    t = np.array([[3.0, 0, 0], [1.0, 0, 0], [2.0, 0, 0], [9.0, 9, 9]])
    q = np.array([gt_pose(3)[1], gt_pose(1)[1], gt_pose(2)[1], gt_pose(0)[1]])
    track = GroundTruthTrack(stamps, t, q)
    assert len(track) == 3
    assert track.interpolate(99, 100) is DropReason.OUTSIDE_GT
    assert track.interpolate(301, 100) is DropReason.OUTSIDE_GT
    assert track.interpolate(150, 99) is DropReason.GT_GAP
    exact = track.interpolate(200, 1)
    assert not isinstance(exact, DropReason)
    np.testing.assert_allclose(exact[0], [2.0, 0, 0])
    mid = track.interpolate(250, 100)  # a gap equal to the maximum is allowed
    assert not isinstance(mid, DropReason)
    np.testing.assert_allclose(mid[0], [2.5, 0, 0])
    expected = Slerp([0, 1], Rotation.from_quat([gt_pose(2)[1], gt_pose(3)[1]]))([0.5]).as_quat()[0]
    np.testing.assert_allclose(np.abs(mid[1] @ expected), 1.0, atol=1e-12)
    assert mid[1][3] >= 0


def test_slerp_takes_the_shorter_arc_across_hemispheres() -> None:
    q0 = Rotation.from_rotvec([0, 0, np.radians(170)]).as_quat()
    q1 = Rotation.from_rotvec([0, 0, np.radians(-170)]).as_quat()  # 20 degrees away, through 180
    result = GroundTruthTrack([0, 10], np.zeros((2, 3)), np.array([q0, q1])).interpolate(5, 10)
    assert not isinstance(result, DropReason)
    angle = Rotation.from_quat(result[1]).magnitude()
    assert angle == pytest.approx(np.pi)


# --------------------------------------------------------------------------- errors


@pytest.fixture
def base_args(bag_a: Path, tmp_path: Path) -> list[str]:
    return [
        "from-bag",
        "--bag",
        str(bag_a / "a"),
        "--rig",
        str(bag_a / "rig.yaml"),
        "--out",
        str(tmp_path / "o"),
    ]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--camera-topics", "/left/image_raw", "/back/image_raw", "--gt-topic", "/ground_truth/pose"],
            "camera topic /back/image_raw is not in the bag; its topics: /ground_truth/pose "
            "(geometry_msgs/msg/PoseStamped), /left/image_raw (sensor_msgs/msg/Image), /right/image_raw",
        ),
        (
            ["--camera-topics", "/left/image_raw", "/right/image_raw", "--gt-topic", "/odom"],
            "ground-truth topic /odom is not in the bag; its topics: /ground_truth/pose",
        ),
        (
            ["--camera-topics", "/left/image_raw", "/ground_truth/pose", "--gt-topic", "/right/image_raw"],
            "camera topic /ground_truth/pose has type geometry_msgs/msg/PoseStamped; expected one of "
            "sensor_msgs/msg/Image, sensor_msgs/msg/CompressedImage",
        ),
        (
            ["--camera-topics", "/left/image_raw", "/right/image_raw", "--gt-topic", "/left/image_raw"],
            "/left/image_raw is given both as a camera and as the ground-truth topic",
        ),
        (
            ["--camera-topics", "/left/image_raw", "--gt-topic", "/ground_truth/pose"],
            "the rig has 2 camera(s) (left, right) but 1 camera topic(s) were given",
        ),
    ],
)
def test_cli_errors_are_one_clear_line(
    base_args: list[str], extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*base_args, *extra, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pose-train from-bag: error: ") and err.count("\n") == 1
    assert message in err
    assert not (Path(base_args[-1])).exists()


def test_wrong_ground_truth_type(bag_a: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rig = write_rig(tmp_path / "mono.yaml", ["left"])
    args = ["from-bag", "--bag", str(bag_a / "a"), "--rig", str(rig), "--out", str(tmp_path / "o")]
    assert (
        main([*args, "--camera-topics", "/left/image_raw", "--gt-topic", "/right/image_raw", "--quiet"]) == 2
    )
    assert (
        "ground-truth topic /right/image_raw has type sensor_msgs/msg/Image; expected one of"
        in capsys.readouterr().err
    )


def test_rig_size_must_match_the_images(bag_a: Path, tmp_path: Path) -> None:
    cfg = FromBagConfig(
        bag=bag_a / "a",
        camera_topics=("/left/image_raw", "/right/image_raw"),
        gt_topic="/ground_truth/pose",
        rig=Rig.from_yaml(write_rig(tmp_path / "big.yaml", ["left", "right"], 32, 24)),
        out=tmp_path / "o",
        max_gt_gap_ns=300 * MS,
        progress=False,
    )
    with pytest.raises(BagConversionError, match=r"is 16x12 but the rig gives 32x24 for camera 'left'"):
        convert_bag(cfg)


def test_output_folder_must_not_hold_the_bag(bag_a: Path) -> None:
    cfg = FromBagConfig(
        bag=bag_a / "a",
        camera_topics=("/left/image_raw", "/right/image_raw"),
        gt_topic="/ground_truth/pose",
        rig=Rig.from_yaml(bag_a / "rig.yaml"),
        out=bag_a,
        overwrite=True,
        progress=False,
    )
    with pytest.raises(BagConversionError, match="must not contain the bag"):
        convert_bag(cfg)
    assert (bag_a / "a").exists()


def test_missing_bag_exits_2_without_traceback(tmp_path: Path) -> None:
    rig = write_rig(tmp_path / "rig.yaml", ["front"])
    args = ["from-bag", "--bag", str(tmp_path / "nope"), "--camera-topics", "/front/image_raw"]
    args += ["--gt-topic", "/gt", "--rig", str(rig), "--out", str(tmp_path / "o")]
    result = subprocess.run(
        [sys.executable, "-m", "pose_regressor_training.cli", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr == f"pose-train from-bag: error: bag {tmp_path / 'nope'} does not exist\n"
    assert not (tmp_path / "o").exists()


def test_unreadable_bag_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty_dir").mkdir()
    cfg = FromBagConfig(
        bag=tmp_path / "empty_dir",
        camera_topics=("/front/image_raw",),
        gt_topic="/gt",
        rig=Rig.from_yaml(write_rig(tmp_path / "rig.yaml", ["front"])),
        out=tmp_path / "o",
        progress=False,
    )
    with pytest.raises(BagConversionError, match="cannot read bag"):
        convert_bag(cfg)


def test_block_split_options_and_too_few_sets(
    bag_a: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One recording cut into stretches as `import` does; the options are refused with a single
    split, and a recording too short for its blocks leaves nothing behind."""
    base = ["from-bag", "--bag", str(bag_a / "a"), "--camera-topics", "/left/image_raw", "/right/image_raw"]
    base += ["--gt-topic", "/ground_truth/pose", "--rig", str(bag_a / "rig.yaml"), "--max-gt-gap-ms", "300"]
    out = tmp_path / "blocks"
    assert (
        main([*base, "--out", str(out), "--split-blocks", "5", "--test-every", "2", "--no-val", "--quiet"])
        == 0
    )
    assert re.search(r"sets written: +10 \(train 6, val 0, test 4\)\n", capsys.readouterr().out)
    frames = read_frames(out)
    assert [f.split for f in frames] == ["train"] * 2 + ["test"] * 2 + ["train"] * 2 + ["test"] * 2 + [
        "train"
    ] * 2
    assert [f.sequence for f in frames] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert read_metadata(out)["provenance"]["split_policy"] == {"blocks": 5, "test_every": 2, "val": False}
    for extra, message in [
        (
            ["--split", "train", "--split-blocks", "4"],
            "--split-blocks, --test-every and --no-val apply to --split blocks, not --split train",
        ),
        (["--split", "val", "--no-val"], "apply to --split blocks, not --split val"),
        (
            ["--split-blocks", "11"],
            "--split-blocks 11 is more than the 10 frames (10 synchronized sets with ground truth; "
            "lower --split-blocks, or give --split train/val/test to put them all in one split)",
        ),
    ]:
        target = tmp_path / "refused"
        assert main([*base, "--out", str(target), *extra, "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("pose-train from-bag: error: ") and message in err and err.count("\n") == 1, err
        assert not target.exists() and not list(tmp_path.glob(".refused*"))  # nothing left behind
