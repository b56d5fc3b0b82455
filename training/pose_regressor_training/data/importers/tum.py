"""TUM RGB-D style sequences: ``groundtruth.txt`` and ``rgb.txt`` in one folder.

``groundtruth.txt``: ``timestamp tx ty tz qx qy qz qw`` per line (seconds; the colour camera's
optical centre and orientation in the world, camera-to-world, optical axes x right, y down,
z forward). ``rgb.txt``: ``timestamp filename`` per line, the file relative to the folder.
Lines starting with ``#`` are comments. The ground truth runs at its own rate (100 Hz for the
motion capture) and the images at theirs, so each image takes the pose interpolated at its stamp
between the two ground-truth poses around it (linear translation, slerp rotation), the same
interpolation as ``pose-train from-bag``. An image whose nearest ground-truth pose is more than
`max_dt` seconds away (before the first, after the last, or in a gap) is left out and counted; one
before the first or after the last pose but within `max_dt` takes that pose (no extrapolation).

The files carry no intrinsics: give them (``--intrinsics fx fy cx cy``, pixels, at the images'
size); the size is read from the first image. The published Freiburg calibrations (640 x 480):
fr1 517.3 516.5 318.6 255.3, fr2 520.9 521.0 325.1 249.7, fr3 535.4 539.2 320.1 247.6
(fr3 images are undistorted; fr1 and fr2 have distortion, see --distortion).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from pathlib import Path

import cv2
import numpy as np

from pose_regressor.ground_truth import GroundTruthTrack
from pose_regressor.rig import LensDistortion, PinholeIntrinsics
from pose_regressor_training.data.importers.common import (
    CameraTrack,
    ImportFormatError,
    PosedImage,
    check_intrinsics,
    data_lines,
    parse_floats,
    read_text,
    unit_quaternion,
)

DEFAULT_MAX_DT_S = 0.02
GROUNDTRUTH_FILE = "groundtruth.txt"
IMAGES_FILE = "rgb.txt"
# Seconds whose nanoseconds fit an int64, the stamps of frames.csv and of the ground-truth track
STAMP_RANGE_S = (Decimal(-(2**63)).scaleb(-9), Decimal(2**63 - 1).scaleb(-9))


def _stamp_ns(text: str, where: str) -> int:
    """Seconds as written, to integer ns without float rounding (TUM stamps have 16 digits)."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ImportFormatError(f"{where}: timestamp must be a number of seconds, got {text!r}") from None
    if not value.is_finite():
        raise ImportFormatError(f"{where}: timestamp must be finite, got {text!r}")
    # bounded before the arithmetic: 1e999999999 s overflows Decimal's context, and int() of a
    # merely huge stamp builds a number of as many digits
    if not STAMP_RANGE_S[0] <= value <= STAMP_RANGE_S[1]:
        raise ImportFormatError(
            f"{where}: timestamp must be within ±{int(STAMP_RANGE_S[1])} s (nanoseconds in an int64, up to "
            f"the year 2262), got {text!r}"
        )
    return int((value * 1_000_000_000).to_integral_value())


def read_groundtruth(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(stamps ns (N,), translations (N, 3), quaternions xyzw (N, 4)), sorted by stamp."""
    stamps: list[int] = []
    poses: list[list[float]] = []
    first_line: dict[int, tuple[int, list[float]]] = {}  # stamp -> (line, pose) of its first row
    for number, line in data_lines(path, read_text(path, "ground-truth file")):
        where = f"{path}:{number}"
        tokens = line.split()
        if len(tokens) != 8:
            raise ImportFormatError(f"{where}: expected 'timestamp tx ty tz qx qy qz qw', got {line[:80]!r}")
        stamp = _stamp_ns(tokens[0], where)
        values = parse_floats(tokens[1:], where, "tx ty tz qx qy qz qw")
        pose = values[:3] + list(unit_quaternion(values[3:], where))
        if stamp in first_line:
            # A logger that wrote a row twice is harmless; two poses at one time leave the
            # interpolation to pick one of them at random.
            earlier, earlier_pose = first_line[stamp]
            if not np.allclose(earlier_pose, pose, rtol=0, atol=1e-9):
                raise ImportFormatError(
                    f"{where}: a second, different pose at time {tokens[0]} s (the first is on line "
                    f"{earlier}); a ground-truth file has one pose per time"
                )
            continue
        first_line[stamp] = (number, pose)
        stamps.append(stamp)
        poses.append(pose)
    if not stamps:
        raise ImportFormatError(f"ground-truth file {path} has no poses")
    order = np.argsort(np.array(stamps), kind="stable")
    array = np.array(poses, dtype=float)[order]
    return np.array(stamps, dtype=np.int64)[order], array[:, :3], array[:, 3:]


def read_image_list(path: Path) -> list[tuple[int, str, str]]:
    """(stamp ns, file name, file:line) per image line."""
    images: list[tuple[int, str, str]] = []
    for number, line in data_lines(path, read_text(path, "image list")):
        where = f"{path}:{number}"
        tokens = line.split(maxsplit=1)
        if len(tokens) != 2:
            raise ImportFormatError(f"{where}: expected 'timestamp filename', got {line[:80]!r}")
        images.append((_stamp_ns(tokens[0], where), tokens[1], where))
    return images


def read_tum(
    folder: Path,
    fx: float,
    fy: float,
    cx: float,
    cy: float,
    *,
    max_dt_s: float = DEFAULT_MAX_DT_S,
    distortion: LensDistortion | None = None,
) -> CameraTrack:
    """The images of ``rgb.txt`` that have a ground-truth pose within `max_dt_s`, with ``T_map_cam``
    interpolated at their stamps."""
    if not folder.is_dir():
        held = f"give the folder holding {GROUNDTRUTH_FILE} and {IMAGES_FILE}"
        problem = f"is not a folder ({held})" if folder.exists() else "does not exist"
        raise ImportFormatError(f"TUM sequence folder {folder} {problem}")
    gt_stamps, gt_t, gt_q = read_groundtruth(folder / GROUNDTRUTH_FILE)
    listed = read_image_list(folder / IMAGES_FILE)
    if not listed:
        raise ImportFormatError(f"image list {folder / IMAGES_FILE} lists no images")
    max_dt_ns = round(max_dt_s * 1e9)
    track = GroundTruthTrack(gt_stamps.tolist(), gt_t, gt_q)
    images: list[PosedImage] = []
    for stamp, name, _ in listed:
        nearest = _nearest(track.stamps_ns, stamp)
        if abs(int(track.stamps_ns[nearest]) - stamp) > max_dt_ns:
            continue
        # the bracket is as wide as it is: the nearest pose being close bounds the error already
        pose = track.interpolate(stamp, max_gap_ns=2**62)
        t, q = pose if isinstance(pose, tuple) else (track.translations[nearest], track.quats_xyzw[nearest])
        images.append(PosedImage(name, folder / name, t, q, stamp))
    notes = []
    if len(images) < len(listed):
        notes.append(
            f"{len(listed) - len(images)} of {len(listed)} images have no ground truth within "
            f"{max_dt_s:g} s (--max-time-diff) and are left out"
        )
    if not images:
        raise ImportFormatError(
            f"no image of {folder / IMAGES_FILE} has a ground-truth pose within {max_dt_s:g} s "
            f"(images {listed[0][0] / 1e9:.3f}..{listed[-1][0] / 1e9:.3f} s, ground truth "
            f"{gt_stamps[0] / 1e9:.3f}..{gt_stamps[-1] / 1e9:.3f} s); raise --max-time-diff?"
        )
    first = images[0].path
    bgr = cv2.imread(str(first), cv2.IMREAD_UNCHANGED)
    if bgr is None:
        raise ImportFormatError(f"image {first} cannot be read (for the image size)")
    where = "--intrinsics"
    intrinsics = check_intrinsics(PinholeIntrinsics(bgr.shape[1], bgr.shape[0], fx, fy, cx, cy), where)
    inputs = (folder / GROUNDTRUTH_FILE, folder / IMAGES_FILE)
    return CameraTrack(intrinsics, distortion, images, f"TUM sequence {folder}", "tum", tuple(notes), inputs)


def _nearest(sorted_stamps: np.ndarray, stamp: int) -> int:
    right = int(np.searchsorted(sorted_stamps, stamp))
    if right == 0:
        return 0
    if right == len(sorted_stamps):
        return right - 1
    before, after = int(sorted_stamps[right - 1]), int(sorted_stamps[right])
    return right - 1 if stamp - before <= after - stamp else right
