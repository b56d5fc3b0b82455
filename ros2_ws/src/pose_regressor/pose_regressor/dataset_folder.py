"""The project's dataset folder format (written by `pose-train synth`, `from-bag` and `import`; read
by training through `pose_regressor_training.data.folder` and by `pose-regressor eval-folder`).

DIR/
  dataset.yaml          format name and version, rig (cameras, intrinsics, T_base_cam, optional
                        lens distortion: `pose_regressor.rig`), frame rate, split counts, provenance
  frames.csv            one row per synchronized camera set:
                        index, sequence, split, stamp_ns, tx, ty, tz, qx, qy, qz, qw
                        (T_map_base: metres, unit quaternion xyzw with w >= 0)
  images/<camera>/<index:06d>.png   RGB images, one folder per camera in rig order

Reading checks everything a training run would otherwise meet later, far from its cause, and names
the file (and line) in one message: dataset.yaml must be UTF-8 YAML (read with the config limits of
`pose_regressor.files.read_yaml`: 1 MiB, 10 levels of nesting) with a valid `rig` of at most
`MAX_CAMERAS` cameras; every frames.csv row must have a unique
index >= 0, a known split, a finite pose and a unit quaternion (norm within `QUAT_NORM_TOL` of 1;
it is then normalized to w >= 0); at most `MAX_FRAME_ROWS` rows.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml
from numpy.typing import NDArray

from pose_regressor.bundle import MAX_CAMERAS
from pose_regressor.files import atomic_write_text, read_yaml
from pose_regressor.pose import normalize_quaternion
from pose_regressor.rig import Rig, RigError

FORMAT_NAME = "pose_regressor_dataset"
FORMAT_VERSION = 1
FRAME_COLUMNS = ("index", "sequence", "split", "stamp_ns", "tx", "ty", "tz", "qx", "qy", "qz", "qw")
SPLITS = ("train", "val", "test")
MAX_FRAME_ROWS = 10_000_000  # frames.csv rows (camera sets)
QUAT_NORM_TOL = 1e-2  # |norm(q) - 1| of a frames.csv quaternion (6 printed decimals are far closer)
# Largest |tx|, |ty|, |tz| of a pose: a map frame in UTM or ECEF coordinates stays within 1e7 m,
# so a larger value is a broken file, and its squares would overflow into a NaN loss.
MAX_ABS_POSITION = 1e8


class DatasetFormatError(ValueError):
    """A dataset folder is missing files or does not follow the format."""


@dataclass(frozen=True)
class FrameRecord:
    index: int
    sequence: int
    split: str
    stamp_ns: int
    translation: NDArray[np.float64]
    quat_xyzw: NDArray[np.float64]


def image_path(root: Path, camera: str, index: int) -> Path:
    return root / "images" / camera / f"{index:06d}.png"


def write_metadata(
    root: Path, rig: Rig, fps: float, split_counts: dict[str, int], provenance: dict[str, Any]
) -> None:
    meta = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "fps": float(fps),
        "splits": {k: int(v) for k, v in split_counts.items()},
        "rig": rig.to_dict(),
        "provenance": plain_yaml_value(provenance),
    }
    atomic_write_text(root / "dataset.yaml", yaml.safe_dump(meta, sort_keys=False))


def plain_yaml_value(value: Any) -> Any:
    """`value` with numpy scalars and arrays, tuples and paths turned into the plain Python
    values YAML's safe dumper accepts (it refuses numpy numbers)."""
    if isinstance(value, dict):
        return {str(k): plain_yaml_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_yaml_value(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain_yaml_value(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def write_frames(root: Path, frames: list[FrameRecord]) -> None:
    lines = [",".join(FRAME_COLUMNS)]
    for f in frames:
        values = [str(f.index), str(f.sequence), f.split, str(f.stamp_ns)]
        values += [repr(float(x)) for x in (*f.translation, *f.quat_xyzw)]
        lines.append(",".join(values))
    atomic_write_text(root / "frames.csv", "\n".join(lines) + "\n")


def read_metadata(root: Path) -> dict[str, Any]:
    path = root / "dataset.yaml"
    if not path.is_file():
        raise DatasetFormatError(f"{root} is not a dataset folder: {path.name} is missing")
    meta = read_yaml(path, "dataset file", DatasetFormatError)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise DatasetFormatError(f"{path} is not a {FORMAT_NAME} file")
    if meta.get("version") != FORMAT_VERSION:
        raise DatasetFormatError(
            f"{path}: format version {meta.get('version')} is not supported (want {FORMAT_VERSION})"
        )
    if "rig" not in meta:
        raise DatasetFormatError(f"{path} has no rig (the cameras, their intrinsics and T_base_cam)")
    return meta


#: How positions read where a folder is in metres, and where it is not (an import without a scale).
METRES, SOURCE_UNITS = "m", "units"


def length_unit(meta: dict[str, Any]) -> str:
    """What a folder's positions and position errors are labelled with: `SOURCE_UNITS` where an
    import without `--scale` kept the input's own units (`provenance.units`), else `METRES`.
    frames.csv's columns and metrics.json's `_m` keys keep their names either way."""
    provenance = meta.get("provenance")
    units = provenance.get("units") if isinstance(provenance, dict) else None
    return SOURCE_UNITS if isinstance(units, str) and not units.startswith("metres") else METRES


def rig_from_metadata(root: Path, meta: dict[str, Any]) -> Rig:
    """The rig of a dataset folder's metadata; errors name dataset.yaml."""
    path = root / "dataset.yaml"
    try:
        rig = Rig.from_dict(meta.get("rig"))
    except (RigError, TypeError, ValueError) as exc:
        raise DatasetFormatError(f"{path}: rig: {exc}") from None
    if len(rig.cameras) > MAX_CAMERAS:
        raise DatasetFormatError(f"{path}: the rig has {len(rig.cameras)} cameras; at most {MAX_CAMERAS}")
    return rig


def read_rig(root: Path) -> Rig:
    return rig_from_metadata(root, read_metadata(root))


def _parse_row(row: dict[str | Any, str | Any]) -> FrameRecord:
    """One frames.csv row; ValueError naming the column that is missing or malformed."""
    values: dict[str, Any] = {}
    for column in FRAME_COLUMNS:
        text = row.get(column)
        if text is None:
            raise ValueError(f"the row has no {column} (too few values)")
        try:
            if column in ("index", "sequence", "stamp_ns"):
                values[column] = int(text)
            elif column == "split":
                values[column] = text
            else:
                values[column] = float(text)
        except ValueError:
            kind = "an integer" if column in ("index", "sequence", "stamp_ns") else "a number"
            raise ValueError(f"{column} must be {kind}, got {text!r}") from None
    return FrameRecord(
        index=values["index"],
        sequence=values["sequence"],
        split=values["split"],
        stamp_ns=values["stamp_ns"],
        translation=np.array([values[k] for k in ("tx", "ty", "tz")]),
        quat_xyzw=np.array([values[k] for k in ("qx", "qy", "qz", "qw")]),
    )


def check_position_reach(position: Sequence[float] | np.ndarray) -> None:
    """ValueError when a coordinate of `position` lies beyond ±`MAX_ABS_POSITION` (the check every
    writer of a dataset folder makes before writing, and the reader makes on each row)."""
    if float(np.max(np.abs(np.asarray(position, dtype=float)))) > MAX_ABS_POSITION:
        shown = ", ".join(f"{v:g}" for v in position)
        raise ValueError(f"the position ({shown}) is beyond ±{MAX_ABS_POSITION:g} from the map's origin")


def _check_record(record: FrameRecord) -> FrameRecord:
    """A parsed row's values checked (ValueError why); its quaternion made exactly unit, w >= 0."""
    if record.index < 0:
        raise ValueError(f"index must be >= 0, got {record.index}")
    if record.split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {record.split!r}")
    # A NaN or inf label would only show up later as a NaN loss, far from its cause.
    if not (np.all(np.isfinite(record.translation)) and np.all(np.isfinite(record.quat_xyzw))):
        raise ValueError("the pose is not finite")
    check_position_reach(record.translation)
    q = record.quat_xyzw
    norm = float(np.linalg.norm(q))
    if abs(norm - 1.0) > QUAT_NORM_TOL:
        # An all-zero (or otherwise non-unit) quaternion is no rotation: training would fit it
        # silently and evaluation would refuse it.
        shown = ", ".join(f"{v:g}" for v in q)
        raise ValueError(f"the quaternion (qx, qy, qz, qw) = ({shown}) has norm {norm:.6g}, not 1")
    if abs(norm - 1.0) > 1e-12 or q[3] < 0:
        unit = normalize_quaternion(q)
        record = FrameRecord(
            record.index, record.sequence, record.split, record.stamp_ns, record.translation, unit
        )
    return record


def _first_non_utf8_line(path: Path) -> int:
    """The number of the first line of `path` that is not UTF-8 (0 if none is)."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return 0


def read_frames(root: Path) -> list[FrameRecord]:
    path = root / "frames.csv"
    if not path.is_file():
        raise DatasetFormatError(f"{root} is not a dataset folder: {path.name} is missing")
    frames: list[FrameRecord] = []
    first_line: dict[int, int] = {}  # index -> line where it first appears
    line_no = 1
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if tuple(reader.fieldnames or ()) != FRAME_COLUMNS:
                raise DatasetFormatError(f"{path}: columns must be {', '.join(FRAME_COLUMNS)}")
            for line_no, row in enumerate(reader, start=2):
                if len(frames) >= MAX_FRAME_ROWS:
                    raise DatasetFormatError(f"{path} has more than {MAX_FRAME_ROWS} frames")
                try:
                    record = _check_record(_parse_row(row))
                except ValueError as exc:
                    raise DatasetFormatError(f"{path}:{line_no}: {exc}") from None
                if record.index in first_line:
                    raise DatasetFormatError(
                        f"{path}:{line_no}: index {record.index} appears again (first on line "
                        f"{first_line[record.index]}); every frame needs its own index"
                    )
                first_line[record.index] = line_no
                frames.append(record)
    except UnicodeDecodeError:
        raise DatasetFormatError(f"{path}:{_first_non_utf8_line(path)}: not UTF-8 text") from None
    except csv.Error as exc:
        raise DatasetFormatError(f"{path}:{line_no + 1}: {exc}") from None
    except OSError as exc:
        raise DatasetFormatError(f"cannot read {path}: {exc.strerror or exc}") from None
    return frames


def check_split(split: str | None) -> None:
    """DatasetFormatError unless `split` is one of `SPLITS` (None: every frame)."""
    if split is not None and split not in SPLITS:
        raise DatasetFormatError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")


def split_frames(root: Path, split: str) -> list[FrameRecord]:
    """The frames of `split` in `root`, in file order; one-line errors for a missing folder or split."""
    check_split(split)
    if not root.is_dir():
        raise DatasetFormatError(f"dataset folder {root} does not exist")
    frames = read_frames(root)
    chosen = [f for f in frames if f.split == split]
    if not chosen:
        counts = {s: sum(f.split == s for f in frames) for s in sorted({f.split for f in frames})}
        held = ", ".join(f"{s} {n}" for s, n in counts.items()) or "none"
        raise DatasetFormatError(f"the {split} split of {root} has no frames (frames per split: {held})")
    return chosen


def read_rgb(path: Path) -> NDArray[np.uint8]:
    """An image file as RGB uint8 (h, w, 3); DatasetFormatError naming the file when unreadable."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DatasetFormatError(f"image {path} is missing or cannot be decoded")
    return np.ascontiguousarray(bgr[:, :, ::-1])
