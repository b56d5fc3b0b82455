"""`pose-train to-bag`: a dataset folder's split as a bag with synth --bag's topics, read back the
same (images and poses), and one-line refusals of a missing folder, a wrong split and a taken path."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from pose_regressor.bagio import GROUND_TRUTH_TOPIC, TYPESTORE, ReadStats, open_bag, read_messages
from pose_regressor.dataset_folder import image_path
from pose_regressor_training.cli import main
from tests.unit.folder_fixtures import SPLITS, Q, write_folder


def read_bag(path: Path) -> tuple[dict[str, dict[int, np.ndarray]], dict[int, tuple[np.ndarray, np.ndarray]]]:
    """Images (topic -> stamp -> RGB) and ground truth (stamp -> (t, q)) of a bag."""
    images: dict[str, dict[int, np.ndarray]] = {}
    poses: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    reader = open_bag(path)
    try:
        for connection, _, raw in read_messages(reader, reader.connections, ReadStats()):
            msg = TYPESTORE.deserialize_cdr(raw, connection.msgtype)
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            if connection.topic == GROUND_TRUTH_TOPIC:
                p, o = msg.pose.position, msg.pose.orientation
                poses[stamp] = (np.array([p.x, p.y, p.z]), np.array([o.x, o.y, o.z, o.w]))
            else:
                assert msg.encoding == "rgb8"
                images.setdefault(connection.topic, {})[stamp] = msg.data.reshape(msg.height, msg.width, 3)
    finally:
        reader.close()
    return images, poses


def test_folder_to_bag_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_folder(tmp_path / "data", ("front", "rear"))
    bag = tmp_path / "test_bag"
    assert main(["to-bag", "--data", str(data), "--out", str(bag)]) == 0
    assert capsys.readouterr().out.startswith(f"to-bag: wrote 4 test camera sets of {data} (2 camera(s)")
    images, poses = read_bag(bag)
    test = [i for i, s in enumerate(SPLITS) if s == "test"]
    stamps = [i * 100_000_000 for i in test]
    assert sorted(images) == ["/front/image_raw", "/rear/image_raw"] and sorted(poses) == stamps
    for index, stamp in zip(test, stamps, strict=True):
        for camera in ("front", "rear"):
            expected = cv2.imread(str(image_path(data, camera, index)))[:, :, ::-1]
            assert np.array_equal(images[f"/{camera}/image_raw"][stamp], expected)
        np.testing.assert_array_equal(poses[stamp][0], [0.5 * index, 0.1 * index, 0.0])
        np.testing.assert_array_equal(poses[stamp][1], Q)
    # The storage file carries the bag's own name, not the hidden name it was written under.
    assert sorted(p.name for p in bag.iterdir()) == ["metadata.yaml", "test_bag.mcap"]
    assert "test_bag.mcap" in (bag / "metadata.yaml").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "test_bag"]
    # into a folder yet to be made (it was "[Errno 2] No such file or directory: .../.lab.partial-PID")
    assert main(["to-bag", "--data", str(data), "--out", str(tmp_path / "bags" / "lab")]) == 0
    assert sorted(p.name for p in (tmp_path / "bags" / "lab").iterdir()) == ["lab.mcap", "metadata.yaml"]


@pytest.mark.parametrize("out", ["parent", "same via ..", "same via link", "inside"])
def test_to_bag_overwrite_never_replaces_the_dataset_it_reads(tmp_path: Path, out: str) -> None:
    data = write_folder(tmp_path / "p" / "data", ("front",))
    (tmp_path / "p" / "notes.txt").write_text("keep me")
    (tmp_path / "link").symlink_to(data)
    target = {
        "parent": tmp_path / "p",
        "same via ..": data / "images" / "..",
        "same via link": tmp_path / "link",
        "inside": data / "bag",
    }[out]
    before = sorted(str(f.relative_to(tmp_path)) for f in tmp_path.rglob("*"))
    assert main(["to-bag", "--data", str(data), "--out", str(target), "--overwrite"]) == 2
    assert sorted(str(f.relative_to(tmp_path)) for f in tmp_path.rglob("*")) == before
    assert (tmp_path / "p" / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no-folder", "dataset folder {data}x does not exist"),
        ("bad-split", "split must be one of train, val, test, got 'tset'"),
        ("taken", "bag {bag} exists; use --overwrite to replace it"),
    ],
)
def test_to_bag_refuses_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, message: str
) -> None:
    data = write_folder(tmp_path / "data", ("front",))
    bag = tmp_path / "bag"
    if case == "taken":
        bag.mkdir()
    argv = ["to-bag", "--data", f"{data}x" if case == "no-folder" else str(data), "--out", str(bag)]
    assert main([*argv, *(["--split", "tset"] if case == "bad-split" else [])]) == 2
    err = capsys.readouterr().err
    assert err == f"pose-train to-bag: error: {message.format(data=data, bag=bag)}\n"
    assert [p.name for p in tmp_path.iterdir() if p.name != "data"] == (["bag"] if case == "taken" else [])
