"""Cambridge Landmarks (Kendall et al., "PoseNet", ICCV 2015) as a `FrameList`.

Layout of a scene folder ``ROOT`` (e.g. ``KingsCollege/``)::

    ROOT/dataset_train.txt, dataset_test.txt   three header lines, then one line per image:
                                               ``seqN/frameYYYYY.png X Y Z W P Q R``
    ROOT/seqN/frameYYYYY.png                   RGB image (1920 x 1080 as published, often downscaled)

Pose convention, as found. The files come from a VisualSFM reconstruction (``reconstruction.nvm``
in each scene). In NVM a camera is stored as a quaternion ``W P Q R`` (= w x y z, scalar first) of
the rotation *world -> camera* (``R_cam_world``) together with the camera *centre* ``X Y Z`` in
world coordinates, so that a world point ``p`` has camera coordinates ``R_cam_world (p - c)``, with
the camera frame x right, y down, z forward (optical). Sources: DSAC*'s converter
(vislearn/dsacstar, ``datasets/setup_cambridge.py``) reads exactly these ``dataset_*.txt`` columns,
builds ``R`` from ``W P Q R`` (scalar first), forms the world-to-camera matrix ``[R | -R c]``,
projects points with it as ``f * X / Z + image centre`` (so x right, y down, z forward) and stores
its inverse as the camera-to-world pose; the Aachen Day-Night README (quoted in
tsattler/visuallocalizationbenchmark issue #22) states the NVM convention: rotation from world to
camera as a quaternion plus the camera position in world, ``t = -R c``.

Conversion here: ``q_world_cam = conj(q_cam_world)`` (``R_world_cam = R_cam_world^T``),
``t_world_cam = c``; then, like every loader (see `data/sources.py`), the rig is one camera
``"camera"`` at the base origin looking along base +x (REP-103 `base_link`: x forward, y left,
z up) and ``T_map_base = T_world_cam · T_base_cam⁻¹``; map = the reconstruction's world frame
(arbitrary orientation and scale as in the dataset, roughly metres).

Intrinsics are approximate: the focal length differs per image in the reconstruction. The rig uses
``focal_px_1920`` px at 1920 px width, scaled to the actual image width, principal point at the
image centre. The default 1677.5 px is LessMore's Cambridge setting, 744.375 px at 852 x 480
(quoted in alexgkendall/caffe-posenet issue #34), scaled to 1920 px.

Sequence id = N of the ``seqN`` folder. The dataset has no timestamps: ``stamp_ns`` is synthetic,
frame number / `fps`; only the order within a sequence is meaningful.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from pose_regressor.pose import normalize_quaternion
from pose_regressor.rig import PinholeIntrinsics
from pose_regressor_training.data.benchmark import (
    base_pose_from_camera_pose,
    check_benchmark_split,
    single_camera_rig,
)
from pose_regressor_training.data.dataset import FrameEntry, FrameList
from pose_regressor_training.data.folder import DatasetFormatError

FloatArray = NDArray[np.float64]

SPLIT_FILES = {"train": "dataset_train.txt", "test": "dataset_test.txt"}
HEADER_LINES = 3
PUBLISHED_SIZE = (1920, 1080)
DEFAULT_FOCAL_PX_1920 = 1677.5
DEFAULT_FPS = 2.0
MAX_FPS = 1000.0  # fps is in (0, MAX_FPS]
MAX_FOCAL_PX = 100_000.0  # focal_px_1920 is in (0, MAX_FOCAL_PX]
MAX_IMAGE_SIDE = 16384  # image_size (width, height): each in [1, MAX_IMAGE_SIDE]
# Quaternions are printed with ~6 decimals; anything further from unit norm is not a rotation.
_QUAT_NORM_TOL = 1e-2

_SEQUENCE_DIR = re.compile(r"seq(\d+)", re.IGNORECASE)
_TRAILING_NUMBER = re.compile(r"(\d+)$")


def load_cambridge(
    root: str | Path,
    split: str,
    *,
    focal_px_1920: float = DEFAULT_FOCAL_PX_1920,
    image_size: tuple[int, int] | None = None,
    fps: float = DEFAULT_FPS,
    check_images: bool = True,
) -> FrameList:
    """One split (``train`` or ``test``) of a Cambridge Landmarks scene, poses as ``T_map_base``.

    Args:
        root: the scene folder holding ``dataset_train.txt`` / ``dataset_test.txt``.
        split: ``train`` or ``test`` (the dataset has no validation split).
        focal_px_1920: approximate focal length in pixels at 1920 px image width.
        image_size: (width, height) of the images on disk; None reads it from the first image.
        fps: nominal frame rate for the synthetic stamps.
        check_images: require every listed image file to exist.

    Raises:
        DatasetFormatError: unknown split, missing split file, malformed line or missing image
            (the message names the file and line).
    """
    check_benchmark_split(split, "Cambridge Landmarks")
    if not isinstance(check_images, bool):
        raise ValueError(
            f"Cambridge Landmarks option check_images must be true or false, got {check_images!r}"
        )
    for name, value, high in (("fps", fps, MAX_FPS), ("focal_px_1920", focal_px_1920, MAX_FOCAL_PX)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= high:
            raise ValueError(f"Cambridge Landmarks option {name} must be in (0, {high:g}], got {value!r}")
    if image_size is not None and (
        not isinstance(image_size, list | tuple)
        or len(image_size) != 2
        or not all(
            isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_IMAGE_SIDE for v in image_size
        )
    ):
        raise ValueError(
            "Cambridge Landmarks option image_size must be [width, height], each in "
            f"[1, {MAX_IMAGE_SIDE}], got {image_size!r}"
        )
    root = Path(root)
    path = root / SPLIT_FILES[split]
    records = read_split_file(path)
    if check_images:
        for rec in records:
            if not (root / rec.image).is_file():
                raise DatasetFormatError(f"{path}:{rec.line_no}: image {root / rec.image} does not exist")
    width, height = image_size if image_size is not None else _probe_size(root / records[0].image, path)
    scale = width / PUBLISHED_SIZE[0]
    intrinsics = PinholeIntrinsics(
        width, height, focal_px_1920 * scale, focal_px_1920 * scale, width / 2.0, height / 2.0
    )
    frames = []
    for rec in sorted(records, key=lambda r: (r.sequence, r.frame, r.line_no)):
        t_map_base, q_map_base = base_pose_from_camera_pose(rec.t_world_cam, rec.q_world_cam)
        frames.append(
            FrameEntry(
                image_paths=(root / rec.image,),
                translation=t_map_base,
                quat_xyzw=q_map_base,
                stamp_ns=round(rec.frame * 1e9 / fps),
                sequence=rec.sequence,
            )
        )
    return FrameList(
        single_camera_rig(intrinsics),
        frames,
        name=f"cambridge/{root.name}:{split}",
        metadata={
            "kind": "cambridge",
            "scene": root.name,
            "root": str(root),
            "split": split,
            "sequences": sorted({f.sequence for f in frames}),
            "intrinsics_approximate": True,
        },
    )


@dataclass(frozen=True)
class CambridgeRecord:
    """One line of a ``dataset_*.txt`` file, converted to the camera pose ``T_world_cam``."""

    image: Path  # relative to the scene folder
    sequence: int
    frame: int
    t_world_cam: FloatArray  # (3,) camera centre in world, metres
    q_world_cam: FloatArray  # (4,) xyzw, w >= 0: optical frame -> world
    line_no: int


def read_split_file(path: Path) -> list[CambridgeRecord]:
    """Parse a ``dataset_train.txt`` / ``dataset_test.txt`` (header skipped, blank lines ignored)."""
    if not path.is_file():
        raise DatasetFormatError(f"Cambridge Landmarks split file {path} does not exist")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DatasetFormatError(
            f"cannot read Cambridge Landmarks split file {path}: {exc.strerror or exc}"
        ) from None
    except UnicodeDecodeError as exc:
        raise DatasetFormatError(
            f"Cambridge Landmarks split file {path} is not UTF-8 text ({exc.reason})"
        ) from None
    records = [
        parse_line(line, path, line_no)
        for line_no, line in enumerate(lines, start=1)
        if line_no > HEADER_LINES and line.strip()
    ]
    if not records:
        raise DatasetFormatError(f"Cambridge Landmarks split file {path} lists no images")
    return records


def parse_line(line: str, path: Path, line_no: int) -> CambridgeRecord:
    """``seqN/frameYYYYY.png X Y Z W P Q R`` -> record with ``T_world_cam`` (see the module docstring)."""
    where = f"{path}:{line_no}"
    fields = line.split()
    if len(fields) != 8:
        raise DatasetFormatError(
            f"{where}: expected 'IMAGE X Y Z W P Q R' (8 fields), got {len(fields)}: {line.strip()!r}"
        )
    image = Path(fields[0])
    try:
        values = np.array([float(v) for v in fields[1:]])
    except ValueError as exc:
        raise DatasetFormatError(f"{where}: pose values must be numbers: {exc}") from exc
    if not np.all(np.isfinite(values)):
        raise DatasetFormatError(f"{where}: pose values must be finite, got {fields[1:]}")
    centre, (w, x, y, z) = values[:3], values[3:]
    norm = float(np.linalg.norm(values[3:]))
    if abs(norm - 1.0) > _QUAT_NORM_TOL:
        raise DatasetFormatError(f"{where}: quaternion W P Q R has norm {norm:.6g}, expected 1")
    sequence = _sequence_of(image)
    if sequence is None:
        raise DatasetFormatError(f"{where}: image path {fields[0]!r} has no 'seqN' folder (the sequence id)")
    frame = _TRAILING_NUMBER.search(image.stem)
    if frame is None:
        raise DatasetFormatError(f"{where}: image name {image.name!r} has no frame number")
    # File: R_cam_world as (w, x, y, z). Its conjugate (x, y, z negated) is R_world_cam, in xyzw.
    q_world_cam = normalize_quaternion([-x, -y, -z, w])
    return CambridgeRecord(image, sequence, int(frame.group(1)), centre, q_world_cam, line_no)


def _sequence_of(image: Path) -> int | None:
    for part in image.parts[:-1]:
        match = _SEQUENCE_DIR.fullmatch(part)
        if match is not None:
            return int(match.group(1))
    return None


def _probe_size(image: Path, split_path: Path) -> tuple[int, int]:
    bgr = cv2.imread(str(image), cv2.IMREAD_UNCHANGED)
    if bgr is None:
        raise DatasetFormatError(
            f"cannot read {image} (first image of {split_path}) to find the image size; give image_size="
        )
    return int(bgr.shape[1]), int(bgr.shape[0])
