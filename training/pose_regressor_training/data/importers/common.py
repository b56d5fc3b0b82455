"""What every importer reads into: one camera and its posed images, in the optical-frame convention."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from pose_regressor.pose import normalize_quaternion
from pose_regressor.rig import LensDistortion, PinholeIntrinsics
from pose_regressor_training.data.folder import DatasetFormatError

# The split policy's defaults (`pose-train import --split-blocks`, `--test-every`; see writer.py).
DEFAULT_SPLIT_BLOCKS = 20
DEFAULT_TEST_EVERY = 5

FloatArray = NDArray[np.float64]

MAX_INPUT_TEXT_BYTES = 1 << 30  # a pose file larger than this is not a pose file
QUAT_NORM_TOL = 1e-3  # |norm(q) - 1| accepted in a pose file before it is normalized


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


def read_text(path: Path, what: str) -> str:
    """The UTF-8 text of `path`; ImportFormatError naming it when it is missing or unreadable."""
    if not path.is_file():
        raise ImportFormatError(f"{what} {path} does not exist")
    try:
        if path.stat().st_size > MAX_INPUT_TEXT_BYTES:
            raise ImportFormatError(f"{what} {path} is larger than {MAX_INPUT_TEXT_BYTES >> 20} MiB")
        return path.read_text(encoding="utf-8")
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
    if not all(math.isfinite(v) for v in values):
        raise ImportFormatError(f"{where}: {what} must be finite, got {' '.join(tokens)!r}")
    return values


def unit_quaternion(q_xyzw: list[float] | FloatArray, where: str) -> FloatArray:
    """`q_xyzw` normalized to w >= 0; ImportFormatError when it is far from unit length."""
    q = np.asarray(q_xyzw, dtype=float)
    norm = float(np.linalg.norm(q))
    if abs(norm - 1.0) > QUAT_NORM_TOL:
        raise ImportFormatError(f"{where}: the rotation quaternion has norm {norm:.6g}, not 1")
    return normalize_quaternion(q)


def check_intrinsics(intrinsics: PinholeIntrinsics, where: str) -> PinholeIntrinsics:
    """Positive size and focal lengths, finite principal point."""
    if intrinsics.width <= 0 or intrinsics.height <= 0:
        size = f"{intrinsics.width}x{intrinsics.height}"
        raise ImportFormatError(f"{where}: image size must be positive, got {size}")
    values = (intrinsics.fx, intrinsics.fy, intrinsics.cx, intrinsics.cy)
    if not all(math.isfinite(v) for v in values) or intrinsics.fx <= 0 or intrinsics.fy <= 0:
        raise ImportFormatError(f"{where}: focal lengths must be positive and finite, got {values}")
    return intrinsics
