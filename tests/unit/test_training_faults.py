"""Bad training input, unit level: unreadable images (named with frame and camera), skipping them,
non-finite labels, checkpoint writes, and the Ctrl-C message and resume command of `pose-train fit`."""

from __future__ import annotations

import shlex
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from pose_regressor.rig import preset_rig
from pose_regressor_training.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from pose_regressor_training.cli import build_parser
from pose_regressor_training.data.dataset import (
    BadFrame,
    ImageLoadError,
    PoseDataset,
    describe_skipped,
    worker_error_message,
)
from pose_regressor_training.data.folder import (
    DatasetFormatError,
    FrameRecord,
    image_path,
    load_folder,
    write_frames,
    write_metadata,
)
from pose_regressor_training.errors import TrainingInterrupted
from pose_regressor_training.model_commands import resume_command
from pose_regressor_training.models import ModelConfig

W, H = 16, 12
Q = np.array([0.0, 0.0, 0.0, 1.0])


def pixels(frame: int, camera: int) -> np.ndarray:
    return np.full((H, W, 3), (10 * frame + camera) % 256, dtype=np.uint8)


def make_folder(root: Path, frames: int = 6) -> Path:
    """A stereo dataset folder whose images are uniform: value 10 * frame + camera."""
    rig = preset_rig("stereo", W, H)
    root.mkdir(parents=True)
    records = [FrameRecord(i, 0, "train", i * 100, np.array([float(i), 0, 0]), Q) for i in range(frames)]
    write_metadata(root, rig, 10.0, {"train": frames}, {})
    write_frames(root, records)
    for i in range(frames):
        for k, cam in enumerate(rig.names):
            path = image_path(root, cam, i)
            path.parent.mkdir(parents=True, exist_ok=True)
            assert cv2.imwrite(str(path), pixels(i, k))
    return root


def damage(path: Path, how: str) -> None:
    if how == "missing":
        path.unlink()
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[:40])
    else:
        path.write_bytes(b"\x00garbage" * 50)


REASONS = {
    "missing": "does not exist",
    "empty": "is an empty file",
    "truncated": "cannot be decoded: truncated or not an image",
    "garbage": "cannot be decoded: truncated or not an image",
}


@pytest.mark.parametrize("how", sorted(REASONS))
@pytest.mark.parametrize("preload", [True, False])
def test_unreadable_image_error_names_file_frame_and_camera(tmp_path: Path, how: str, preload: bool) -> None:
    root = make_folder(tmp_path / "data")
    bad = image_path(root, "right", 3)
    damage(bad, how)
    frames = load_folder(root, "train")

    def first_pass() -> None:
        dataset = PoseDataset(frames, preload=preload, progress=False)
        for i in range(len(dataset)):
            dataset[i]

    with pytest.raises(ImageLoadError) as caught:
        first_pass()
    assert str(caught.value) == f"image {bad} {REASONS[how]} (frame 3 of data:train, camera right)"


@pytest.mark.parametrize("preload", [True, False])
def test_skip_bad_leaves_out_the_frames_with_unreadable_images(tmp_path: Path, preload: bool) -> None:
    root = make_folder(tmp_path / "data")
    damage(image_path(root, "left", 0), "empty")
    damage(image_path(root, "right", 4), "garbage")
    dataset = PoseDataset(load_folder(root, "train"), preload=preload, progress=False, skip_bad=True)
    assert [bad.index for bad in dataset.skipped] == [0, 4]
    assert (
        "left/000000.png is an empty file (frame 0 of data:train, camera left)" in dataset.skipped[0].reason
    )
    assert len(dataset) == 4
    assert [f.translation[0] for f in dataset.frame_list.frames] == [1.0, 2.0, 3.0, 5.0]
    for position, frame in enumerate((1, 2, 3, 5)):
        sample = dataset[position]
        assert torch.equal(sample["images"], torch.from_numpy(np.stack([pixels(frame, 0), pixels(frame, 1)])))
        assert sample["t"][0] == frame


def test_skip_bad_with_every_frame_good_changes_nothing(tmp_path: Path) -> None:
    frames = load_folder(make_folder(tmp_path / "data"), "train")
    checked = PoseDataset(frames, preload=True, progress=False, skip_bad=True)
    plain = PoseDataset(frames, preload=True, progress=False)
    assert checked.skipped == [] and checked.frame_list is frames
    assert all(torch.equal(checked[i]["images"], plain[i]["images"]) for i in range(len(frames)))


def test_skipped_summary_shows_the_first_few() -> None:
    skipped = [BadFrame(i, f"image /d/{i}.png does not exist") for i in range(5)]
    assert describe_skipped(skipped, 40, "train") == (
        "skipped 5 of 40 train frames with unreadable images: image /d/0.png does not exist; "
        "image /d/1.png does not exist; image /d/2.png does not exist; and 2 more"
    )


def test_worker_traceback_is_reduced_to_our_line() -> None:
    wrapped = ImageLoadError(
        "Caught ImageLoadError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
        '  File "x.py", line 1, in f\n'
        "pose_regressor_training.data.dataset.ImageLoadError: "
        "image /d/a.png does not exist (frame 2, camera left)\n"
    )
    assert worker_error_message(wrapped) == "image /d/a.png does not exist (frame 2, camera left)"
    plain = ImageLoadError("image /d/a.png does not exist")
    assert worker_error_message(plain) == "image /d/a.png does not exist"


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_non_finite_pose_label_is_rejected_with_file_and_line(tmp_path: Path, value: str) -> None:
    root = make_folder(tmp_path / "data", frames=3)
    csv = root / "frames.csv"
    lines = csv.read_text().splitlines()
    fields = lines[2].split(",")
    fields[5] = value  # ty of the second frame
    lines[2] = ",".join(fields)
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetFormatError, match=r"frames\.csv:3: the pose is not finite$"):
        load_folder(root, "train")


def test_checkpoint_write_replaces_whole_files_only(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    rig = preset_rig("stereo", W, H)
    save_checkpoint(path, Checkpoint(ModelConfig(), {"w": torch.ones(3)}, rig, epoch=1))
    # What a kill in the middle of the next write leaves: a partial temporary file beside it.
    (tmp_path / "last.pt.tmp").write_bytes(b"PK\x03\x04 half a zip")
    assert load_checkpoint(path).epoch == 1
    save_checkpoint(path, Checkpoint(ModelConfig(), {"w": torch.zeros(3)}, rig, epoch=2))
    assert load_checkpoint(path).epoch == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_interruption_message_and_resume_command(tmp_path: Path) -> None:
    stop = TrainingInterrupted(4, 30, 17, tmp_path / "run dir" / "last.pt", 3)
    assert (
        stop.describe()
        == f"interrupted at epoch 4/30, step 17; {tmp_path}/run dir/last.pt (epoch 3) is intact"
    )
    early = TrainingInterrupted(1, 30, 1, tmp_path / "last.pt", None)
    assert early.describe() == "interrupted at epoch 1/30, step 1; no checkpoint was written yet"
    assert isinstance(early, KeyboardInterrupt)

    argv = ["fit", "--config", "c.yaml", "--out", str(tmp_path / "run dir"), "--skip-bad"]
    args = build_parser().parse_args([*argv, "data.root=/my data", "optim.epochs=3"])
    command = resume_command(args)
    assert shlex.split(command) == [
        "pose-train",
        "fit",
        "--config",
        "c.yaml",
        "--out",
        str(tmp_path / "run dir"),
        "--resume",
        "--skip-bad",
        "data.root=/my data",
        "optim.epochs=3",
    ]


def test_a_dataloader_worker_is_quiet_only_in_the_fd_sharing_thread() -> None:
    """multiprocessing's resource sharer runs `_serve` in a thread; a failed handover after the
    parent stopped must not print a traceback, anything else still reaches the hook."""
    from pose_regressor_training.training_data import _quiet_in_the_fd_sharing_thread

    seen: list[type[BaseException]] = []
    hook = _quiet_in_the_fd_sharing_thread(lambda kind, value, tb: seen.append(kind))

    def raise_into_hook(error: BaseException) -> None:
        try:
            raise error
        except BaseException as exc:
            hook(type(exc), exc, exc.__traceback__)

    def _serve() -> None:  # named like multiprocessing.resource_sharer's thread target
        raise_into_hook(EOFError())

    thread = threading.Thread(target=_serve)
    thread.start()
    thread.join()
    raise_into_hook(KeyError("x"))
    assert seen == [KeyError]


def test_threaded_preload_keeps_frame_order_and_matches_loading_on_demand(tmp_path: Path) -> None:
    frames = load_folder(make_folder(tmp_path / "data", frames=40), "train")
    preloaded = PoseDataset(frames, preload=True, progress=False)
    on_demand = PoseDataset(frames, preload=False, progress=False)
    for i in range(len(frames)):
        expected = np.stack([pixels(i, 0), pixels(i, 1)])
        assert np.array_equal(preloaded.images(i), expected)
        assert np.array_equal(on_demand.images(i), expected)


def test_threaded_scan_keeps_frame_order_with_bad_frames_scattered(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "data", frames=40)
    bad = (0, 7, 19, 39)
    for frame in bad:
        damage(image_path(root, "right", frame), "truncated")
    dataset = PoseDataset(load_folder(root, "train"), preload=True, progress=False, skip_bad=True)
    assert [b.index for b in dataset.skipped] == list(bad)
    good = [i for i in range(40) if i not in bad]
    assert len(dataset) == len(good)
    for position, frame in enumerate(good):
        assert np.array_equal(dataset.images(position), np.stack([pixels(frame, 0), pixels(frame, 1)]))
