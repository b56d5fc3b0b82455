"""Microsoft 7-Scenes (Shotton et al., CVPR 2013) as a `FrameList`.

Layout::

    ROOT/<scene>/TrainSplit.txt, TestSplit.txt     lines like ``sequence1`` (meaning seq-01)
    ROOT/<scene>/seq-01/frame-000000.color.png     RGB image, 640 x 480
    ROOT/<scene>/seq-01/frame-000000.pose.txt      4 x 4 camera-to-world matrix, metres

(two-digit sequence and six-digit frame numbers, e.g. ``seq-02/frame-000417.color.png``)

`root` is either the folder holding the scene folders (then give ``scene=``) or a scene folder.

Poses. ``frame-*.pose.txt`` is ``T_world_cam``: it maps points of the Kinect camera frame, which is
an optical frame (x right, y down, z forward), into the scene's world frame. The published
rotation blocks are slightly non-orthonormal (KinectFusion tracking, printed with limited
precision); they are accepted within ``rotation_atol`` and projected onto the nearest rotation.
Like every loader here, the frames carry ``T_map_base`` with `base_link` REP-103 (x forward,
y left, z up): the rig is one camera ``"camera"`` at the base origin looking along base +x, so
``T_map_base = T_world_cam · T_base_cam⁻¹`` (see `data/sources.py`); map = the scene's world frame.

Intrinsics. fx = fy = 585 px, cx = 320, cy = 240 at 640 x 480: the values commonly used for the
dataset (they describe the depth camera; the colour images are not registered to it, so they are
approximate for the RGB frames).

Sequence id = the seq number (``seq-03`` -> 3). The dataset has no timestamps: ``stamp_ns`` is
synthetic, frame number / `fps` (nominal Kinect rate, 30 Hz); only the order is meaningful.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from pose_regressor.pose import from_matrix
from pose_regressor.rig import PinholeIntrinsics
from pose_regressor_training.data.benchmark import (
    base_pose_from_camera_pose,
    check_benchmark_split,
    single_camera_rig,
)
from pose_regressor_training.data.dataset import FrameEntry, FrameList
from pose_regressor_training.data.folder import DatasetFormatError

FloatArray = NDArray[np.float64]

INTRINSICS = PinholeIntrinsics(width=640, height=480, fx=585.0, fy=585.0, cx=320.0, cy=240.0)
SPLIT_FILES = {"train": "TrainSplit.txt", "test": "TestSplit.txt"}
DEFAULT_ROTATION_ATOL = 1e-2
DEFAULT_FPS = 30.0
MAX_ROTATION_ATOL = 0.5  # rotation_atol is in (0, MAX_ROTATION_ATOL]
MAX_FPS = 1000.0  # fps is in (0, MAX_FPS]

_SPLIT_LINE = re.compile(r"sequence(\d+)", re.IGNORECASE)
_POSE_FILE = re.compile(r"frame-(\d+)\.pose\.txt")


def load_seven_scenes(
    root: str | Path,
    split: str,
    *,
    scene: str | None = None,
    rotation_atol: float = DEFAULT_ROTATION_ATOL,
    fps: float = DEFAULT_FPS,
    check_images: bool = True,
) -> FrameList:
    """One split (``train`` or ``test``) of a 7-Scenes scene, poses as ``T_map_base``.

    Args:
        root: the 7-Scenes root (with ``scene``) or a scene folder (``scene=None``).
        split: ``train`` or ``test`` (7-Scenes has no validation split).
        scene: scene folder name under `root`, e.g. ``"chess"``.
        rotation_atol: element-wise tolerance on ``|R^T R - I|`` and the bottom row.
        fps: nominal frame rate for the synthetic stamps.
        check_images: require every ``frame-*.color.png`` next to its pose file.

    Raises:
        DatasetFormatError: unknown split or scene, missing/malformed split file (names file and
            line), missing sequence folder or image, malformed pose file (names the file).
    """
    check_benchmark_split(split, "7-Scenes")
    if scene is not None and (not isinstance(scene, str) or not scene or "/" in scene):
        raise ValueError(f"7-Scenes option scene must be a folder name, got {scene!r}")
    if not isinstance(check_images, bool):
        raise ValueError(f"7-Scenes option check_images must be true or false, got {check_images!r}")
    if isinstance(fps, bool) or not isinstance(fps, int | float) or not 0 < fps <= MAX_FPS:
        raise ValueError(f"7-Scenes option fps must be in (0, {MAX_FPS:g}], got {fps!r}")
    if (
        isinstance(rotation_atol, bool)
        or not isinstance(rotation_atol, int | float)
        or not 0 < rotation_atol <= MAX_ROTATION_ATOL
    ):
        raise ValueError(
            f"7-Scenes option rotation_atol must be in (0, {MAX_ROTATION_ATOL:g}], got {rotation_atol!r}"
        )
    scene_dir = _scene_dir(Path(root), scene)
    split_path = scene_dir / SPLIT_FILES[split]
    frames: list[FrameEntry] = []
    sequences = read_split_file(split_path)
    for sequence, line_no in sequences:
        seq_dir = scene_dir / f"seq-{sequence:02d}"
        if not seq_dir.is_dir():
            raise DatasetFormatError(f"{split_path}:{line_no}: sequence folder {seq_dir} does not exist")
        frames.extend(_load_sequence(seq_dir, sequence, rotation_atol, fps, check_images))
    return FrameList(
        single_camera_rig(INTRINSICS),
        frames,
        name=f"7scenes/{scene_dir.name}:{split}",
        metadata={
            "kind": "7scenes",
            "scene": scene_dir.name,
            "root": str(scene_dir),
            "split": split,
            "sequences": [s for s, _ in sequences],
        },
    )


def read_split_file(path: Path) -> list[tuple[int, int]]:
    """``(sequence number, line number)`` for each ``sequenceN`` line, sorted by sequence number."""
    if not path.is_file():
        raise DatasetFormatError(f"7-Scenes split file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DatasetFormatError(f"cannot read 7-Scenes split file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise DatasetFormatError(f"7-Scenes split file {path} is not UTF-8 text ({exc.reason})") from None
    sequences: list[tuple[int, int]] = []
    for line_no, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        match = _SPLIT_LINE.fullmatch(line)
        if match is None:
            raise DatasetFormatError(f"{path}:{line_no}: expected a line like 'sequence1', got {line!r}")
        sequences.append((int(match.group(1)), line_no))
    if not sequences:
        raise DatasetFormatError(f"7-Scenes split file {path} lists no sequences")
    return sorted(sequences)


def read_pose_file(path: Path, rotation_atol: float = DEFAULT_ROTATION_ATOL) -> tuple[FloatArray, FloatArray]:
    """``T_world_cam`` ``(t (3,), q xyzw (4,))`` of one ``frame-*.pose.txt`` (16 numbers, 4 x 4)."""
    try:
        values = [float(v) for v in path.read_text(encoding="utf-8").split()]
    except OSError as exc:
        raise DatasetFormatError(f"cannot read 7-Scenes pose file {path}: {exc}") from exc
    except ValueError as exc:
        raise DatasetFormatError(f"malformed 7-Scenes pose file {path}: {exc}") from exc
    if len(values) != 16:
        raise DatasetFormatError(
            f"malformed 7-Scenes pose file {path}: expected a 4 x 4 matrix (16 numbers), got {len(values)}"
        )
    try:
        return from_matrix(np.array(values).reshape(4, 4), atol=rotation_atol)
    except ValueError as exc:
        raise DatasetFormatError(f"malformed 7-Scenes pose file {path}: {exc}") from exc


def _scene_dir(root: Path, scene: str | None) -> Path:
    if scene is not None:
        scene_dir = root / scene
        if not scene_dir.is_dir():
            found = ", ".join(_scenes_under(root)) or "none"
            raise DatasetFormatError(f"7-Scenes scene folder {scene_dir} does not exist (scenes: {found})")
        return scene_dir
    if any((root / name).is_file() for name in SPLIT_FILES.values()):
        return root
    found = ", ".join(_scenes_under(root)) or "none"
    raise DatasetFormatError(
        f"{root} is not a 7-Scenes scene folder (no {' or '.join(SPLIT_FILES.values())}); "
        f"give scene= (scenes found: {found})"
    )


def _scenes_under(root: Path) -> list[str]:
    if not root.is_dir():
        return []
    return sorted(
        p.name for p in root.iterdir() if any((p / name).is_file() for name in SPLIT_FILES.values())
    )


def _load_sequence(
    seq_dir: Path, sequence: int, rotation_atol: float, fps: float, check_images: bool
) -> list[FrameEntry]:
    numbered = []
    for pose_path in seq_dir.glob("frame-*.pose.txt"):
        match = _POSE_FILE.fullmatch(pose_path.name)
        if match is not None:
            numbered.append((int(match.group(1)), pose_path))
    if not numbered:
        raise DatasetFormatError(f"7-Scenes sequence folder {seq_dir} has no frame-*.pose.txt files")
    frames = []
    for number, pose_path in sorted(numbered):
        image = pose_path.with_name(pose_path.name.removesuffix(".pose.txt") + ".color.png")
        if check_images and not image.is_file():
            raise DatasetFormatError(f"7-Scenes image {image} is missing (pose file {pose_path.name} exists)")
        t_map_base, q_map_base = base_pose_from_camera_pose(*read_pose_file(pose_path, rotation_atol))
        frames.append(
            FrameEntry(
                image_paths=(image,),
                translation=t_map_base,
                quat_xyzw=q_map_base,
                stamp_ns=round(number * 1e9 / fps),
                sequence=sequence,
            )
        )
    return frames
