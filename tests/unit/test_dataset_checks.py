"""Dataset folders and benchmark options are checked when loaded, each problem one message naming the
file (and line) (issue 14, item 6). The real `pose-train fit` on such folders is run in
tests/integration/test_cli_bounds.py; these cover the remaining forms in-process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pose_regressor.rig import preset_rig
from pose_regressor_training.data.cambridge import load_cambridge
from pose_regressor_training.data.folder import (
    DatasetFormatError,
    FrameRecord,
    load_folder,
    read_frames,
    write_frames,
    write_metadata,
)
from pose_regressor_training.data.seven_scenes import load_seven_scenes

Q = np.array([0.0, 0.0, 0.0, 1.0])


def make_folder(root: Path, frames: int = 4) -> Path:
    """A mono dataset folder without images (loading a FrameList does not read them)."""
    root.mkdir(parents=True)
    records = [FrameRecord(i, 0, "train", i * 100, np.array([float(i), 0, 0]), Q) for i in range(frames)]
    write_metadata(root, preset_rig("mono", 16, 12), 10.0, {"train": frames}, {})
    write_frames(root, records)
    return root


def edit_row(root: Path, line: int, **values: str) -> None:
    """Set columns of frames.csv line `line` (1 is the header)."""
    path = root / "frames.csv"
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    fields = lines[line - 1].split(",")
    for column, value in values.items():
        fields[header.index(column)] = value
    lines[line - 1] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"qx": "0", "qy": "0", "qz": "0", "qw": "0"},
            "the quaternion (qx, qy, qz, qw) = (0, 0, 0, 0) has norm 0, not 1",
        ),
        ({"qw": "2"}, "the quaternion (qx, qy, qz, qw) = (0, 0, 0, 2) has norm 2, not 1"),
        ({"index": "-1"}, "index must be >= 0, got -1"),
        ({"index": "1.5"}, "index must be an integer, got '1.5'"),
        ({"tx": "x"}, "tx must be a number, got 'x'"),
        ({"split": "training"}, "split must be one of train, val, test, got 'training'"),
        ({"ty": "nan"}, "the pose is not finite"),
        (
            {"tx": "1", "ty": "2", "tz": "-2e8"},
            "the position (1, 2, -2e+08) is beyond ±1e+08 from the map's origin",
        ),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path: Path, values: dict[str, str], message: str) -> None:
    root = make_folder(tmp_path / "d")
    edit_row(root, 3, **values)
    with pytest.raises(DatasetFormatError) as caught:
        load_folder(root, "train")
    assert str(caught.value) == f"{root / 'frames.csv'}:3: {message}"


def test_duplicate_index_names_both_lines(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "d")
    edit_row(root, 5, index="1")
    with pytest.raises(DatasetFormatError) as caught:
        read_frames(root)
    assert str(caught.value) == (
        f"{root / 'frames.csv'}:5: index 1 appears again (first on line 3); every frame needs its own index"
    )


def test_nearly_unit_quaternions_are_normalized_to_w_positive(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "d")
    edit_row(root, 2, qw="-0.999")  # 6-decimal rounding and the other hemisphere: the same rotation
    frames = read_frames(root)
    np.testing.assert_allclose(frames[0].quat_xyzw, [0, 0, 0, 1])
    assert frames[1].quat_xyzw is not None and frames[1].quat_xyzw[3] == 1.0


def test_unreadable_frames_csv_forms(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "d")
    path = root / "frames.csv"
    text = path.read_bytes()
    path.write_bytes(text + b"4,0,train,400,0,0,0,0,0,0,\xff\n")
    with pytest.raises(DatasetFormatError, match=rf"^{path}:6: not UTF-8 text$"):
        read_frames(root)
    path.write_bytes(text + b"4,0,train,400,0,0,0,0,0,0," + b"1" * 200_000 + b"\n")
    with pytest.raises(DatasetFormatError, match=rf"^{path}:6: field larger than field limit"):
        read_frames(root)
    path.write_bytes(text + b"4,0,train\n")
    with pytest.raises(DatasetFormatError, match=rf"^{path}:6: the row has no stamp_ns \(too few values\)$"):
        read_frames(root)


def test_rig_problems_name_dataset_yaml(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "d")
    meta = root / "dataset.yaml"
    meta.write_text(meta.read_text().replace("width: 16", "width: sixteen"))
    with pytest.raises(DatasetFormatError, match=rf"^{meta}: rig: cameras\[0\] \(front\): width/height"):
        load_folder(root, "train")


def test_benchmark_options_have_ranges(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^7-Scenes option fps must be in \(0, 1000\], got nan$"):
        load_seven_scenes(tmp_path, "train", fps=float("nan"))
    with pytest.raises(ValueError, match=r"^7-Scenes option rotation_atol must be in \(0, 0.5\], got 5$"):
        load_seven_scenes(tmp_path, "train", rotation_atol=5)
    with pytest.raises(ValueError, match=r"^Cambridge Landmarks option focal_px_1920 must be in"):
        load_cambridge(tmp_path, "train", focal_px_1920=float("inf"))
    with pytest.raises(ValueError, match=r"^Cambridge Landmarks option image_size must be \[width, height\]"):
        load_cambridge(tmp_path, "train", image_size=(10**7, 10**7))


def test_benchmark_split_files_that_are_not_utf8_are_named(tmp_path: Path) -> None:
    (tmp_path / "chess").mkdir()
    split = tmp_path / "chess" / "TrainSplit.txt"
    split.write_bytes(b"sequence1\n\xff\n")
    with pytest.raises(DatasetFormatError, match=rf"^7-Scenes split file {split} is not UTF-8 text"):
        load_seven_scenes(tmp_path, "train", scene="chess")
    cambridge = tmp_path / "dataset_train.txt"
    cambridge.write_bytes(b"header\n\xff\n")
    with pytest.raises(
        DatasetFormatError, match=rf"^Cambridge Landmarks split file {cambridge} is not UTF-8"
    ):
        load_cambridge(tmp_path, "train")
