"""What every importer reads into: one camera and its posed images, in the optical-frame convention."""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from pose_regressor.pose import normalize_quaternion
from pose_regressor.rig import (
    PLUMB_BOB_COEFFICIENTS,
    LensDistortion,
    PinholeIntrinsics,
    distortion_coefficient_problem,
)
from pose_regressor_training.data.folder import DatasetFormatError

# --scale, the metres of --scale-from and the scale it gives: 1e-320 was accepted and put every
# position at about 0
SCALE_RANGE = (1e-6, 1e6)

FloatArray = NDArray[np.float64]

MAX_INPUT_TEXT_BYTES = 1 << 30  # a pose file larger than this is not a pose file
QUAT_NORM_TOL = 1e-3  # |norm(q) - 1| accepted in a pose file before it is normalized
# Far outside any real camera: without a bound fx 1e-300 or 1e300 was imported, and every
# projection then under- or overflows. 0.01 px is a field of view of 179.96 deg on a 64 px image;
# 1e6 px is one of 0.06 deg on a 1000 px image.
FOCAL_PX = (1e-2, 1e6)
PRINCIPAL_POINT_PX = 1e6  # |cx|, |cy|: a principal point may lie off the image, not a million px off
# Images narrower or lower than this hold no scene to learn (a 1x1 copy was taken as a resize of a
# 4000x3000 camera and trained on); the smallest training input in the configs is 64 px wide.
MIN_IMAGE_SIDE_PX = 16


class ImportFormatError(DatasetFormatError):
    """An input file is missing or malformed; the message names the file (and line)."""


@dataclass(frozen=True)
class PosedImage:
    """One image and the pose of its camera's optical frame in the source's world (``T_map_cam``)."""

    name: str  # as the source file names it (used by --scale-from)
    path: Path
    translation: FloatArray  # (3,) camera centre in the map, the source's units
    quat_xyzw: FloatArray  # (4,) unit, w >= 0
    stamp_ns: int | None = None  # None: the source has no timestamps (order by name)


@dataclass(frozen=True)
class CameraTrack:
    """What a reader found: one camera and its posed images, plus a one-line source description."""

    intrinsics: PinholeIntrinsics
    distortion: LensDistortion | None
    images: list[PosedImage]
    source: str  # e.g. "COLMAP binary model /data/sparse/0"
    format: str  # colmap, nerfstudio or tum
    notes: tuple[str, ...] = ()  # what the reader left out, one line each
    inputs: tuple[Path, ...] = ()  # the pose files read (an output folder must not hold them)


def find_path(path: Path) -> Path | None:
    """`path` if it exists, else the path it names with some of its components spelt in the other
    Unicode normal form, else None.

    A pose file and the disk may spell one name two ways: macOS writes names decomposed (NFD: "u"
    and a combining diaeresis), most tools compose them ("ü", NFC). Copied to Linux, each is a
    different name, per folder and file, and the image was "missing"."""
    if path.exists():
        return path
    found = Path(path.anchor) if path.is_absolute() else Path()
    for part in path.parts[1:] if path.is_absolute() else path.parts:
        spellings = dict.fromkeys([part, *(unicodedata.normalize(form, part) for form in ("NFC", "NFD"))])
        match = next((found / s for s in spellings if (found / s).exists()), None)
        if match is None:
            return None
        found = match
    return found


def find_file(path: Path) -> Path | None:
    """`find_path` for a file."""
    found = find_path(path)
    return found if found is not None and found.is_file() else None


def read_text(path: Path, what: str) -> str:
    """The UTF-8 text of `path`, less a leading byte-order mark; ImportFormatError naming it when it
    is missing or unreadable."""
    if not path.is_file():
        raise ImportFormatError(f"{what} {path} does not exist")
    try:
        if path.stat().st_size > MAX_INPUT_TEXT_BYTES:
            raise ImportFormatError(f"{what} {path} is larger than {MAX_INPUT_TEXT_BYTES >> 20} MiB")
        # utf-8-sig: Windows tools (Notepad before 2019, Windows PowerShell's -Encoding utf8) start
        # UTF-8 files with a BOM; kept, it made the first line '\ufeff# ...' or '\ufeff1 PINHOLE ...',
        # refused as malformed, and json.loads refuses it outright
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportFormatError(f"{what} {path} is not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise ImportFormatError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def data_lines(path: Path, text: str) -> Iterator[tuple[int, str]]:
    """(line number, stripped line) of every line that is neither blank nor a `#` comment."""
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line and not line.startswith("#"):
            yield number, line


def parse_floats(tokens: list[str], where: str, what: str) -> list[float]:
    """Finite numbers; ImportFormatError at `where` (file:line) naming what was expected."""
    try:
        values = [float(t) for t in tokens]
    except ValueError:
        raise ImportFormatError(f"{where}: {what} must be numbers, got {' '.join(tokens)!r}") from None
    return check_finite(values, where, what, tokens)


def check_finite(
    values: Sequence[float], where: str, what: str, written: Sequence[str] | None = None
) -> list[float]:
    """`values`; ImportFormatError at `where` (file:line, or file and byte) when one is nan or
    infinite. `written`: the values as the file spells them, for the message."""
    if not all(math.isfinite(v) for v in values):
        shown = " ".join(written if written is not None else (f"{v:g}" for v in values))
        raise ImportFormatError(f"{where}: {what} must be finite, got {shown!r}")
    return list(values)


def unit_quaternion(q_xyzw: list[float] | FloatArray, where: str) -> FloatArray:
    """`q_xyzw` normalized to w >= 0; ImportFormatError when it is far from unit length."""
    q = np.asarray(q_xyzw, dtype=float)
    norm = float(np.linalg.norm(q))
    if not abs(norm - 1.0) <= QUAT_NORM_TOL:  # a nan norm too
        raise ImportFormatError(f"{where}: the rotation quaternion has norm {norm:.6g}, not 1")
    return normalize_quaternion(q)


def check_intrinsics(intrinsics: PinholeIntrinsics, where: str) -> PinholeIntrinsics:
    """Positive size; focal lengths and principal point inside `FOCAL_PX` and `PRINCIPAL_POINT_PX`."""
    if intrinsics.width <= 0 or intrinsics.height <= 0:
        size = f"{intrinsics.width}x{intrinsics.height}"
        raise ImportFormatError(f"{where}: image size must be positive, got {size}")
    low, high = FOCAL_PX
    fx, fy = intrinsics.fx, intrinsics.fy
    if not (low <= fx <= high and low <= fy <= high):  # False for nan
        raise ImportFormatError(
            f"{where}: focal lengths must be from {low:g} to {high:g} px (a sane range), "
            f"got fx {fx:g}, fy {fy:g}"
        )
    cx, cy = intrinsics.cx, intrinsics.cy
    if not (abs(cx) <= PRINCIPAL_POINT_PX and abs(cy) <= PRINCIPAL_POINT_PX):
        raise ImportFormatError(
            f"{where}: the principal point must be within ±{PRINCIPAL_POINT_PX:g} px (a sane range), "
            f"got cx {cx:g}, cy {cy:g}"
        )
    return intrinsics


def check_distortion(distortion: LensDistortion | None, where: str) -> LensDistortion | None:
    """Coefficients within the rig's bound (`distortion_coefficient_problem`; nan refused too)."""
    if distortion is None:
        return None
    for key, value in zip(PLUMB_BOB_COEFFICIENTS, distortion.coefficients, strict=True):
        problem = distortion_coefficient_problem(key, value)
        if problem:
            raise ImportFormatError(f"{where}: {problem}")
    return distortion
