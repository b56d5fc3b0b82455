"""The project's dataset folder format (written by `pose-train synth` and `pose-train from-bag`).

DIR/
  dataset.yaml          format name and version, rig (cameras, intrinsics, T_base_cam),
                        frame rate, split counts, provenance
  frames.csv            one row per synchronized camera set:
                        index, sequence, split, stamp_ns, tx, ty, tz, qx, qy, qz, qw
                        (T_map_base: metres, unit quaternion xyzw with w >= 0)
  images/<camera>/<index:06d>.png   RGB images, one folder per camera in rig order
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from numpy.typing import NDArray

from pose_regressor.rig import Rig
from pose_regressor_training.data.dataset import FrameEntry, FrameList

FORMAT_NAME = "pose_regressor_dataset"
FORMAT_VERSION = 1
FRAME_COLUMNS = ("index", "sequence", "split", "stamp_ns", "tx", "ty", "tz", "qx", "qy", "qz", "qw")
SPLITS = ("train", "val", "test")


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
        "provenance": provenance,
    }
    _atomic_write_text(root / "dataset.yaml", yaml.safe_dump(meta, sort_keys=False))


def write_frames(root: Path, frames: list[FrameRecord]) -> None:
    lines = [",".join(FRAME_COLUMNS)]
    for f in frames:
        values = [str(f.index), str(f.sequence), f.split, str(f.stamp_ns)]
        values += [repr(float(x)) for x in (*f.translation, *f.quat_xyzw)]
        lines.append(",".join(values))
    _atomic_write_text(root / "frames.csv", "\n".join(lines) + "\n")


def read_metadata(root: Path) -> dict[str, Any]:
    path = root / "dataset.yaml"
    if not path.is_file():
        raise DatasetFormatError(f"{root} is not a dataset folder: {path.name} is missing")
    meta = yaml.safe_load(path.read_text())
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise DatasetFormatError(f"{path} is not a {FORMAT_NAME} file")
    if meta.get("version") != FORMAT_VERSION:
        raise DatasetFormatError(
            f"{path}: format version {meta.get('version')} is not supported (want {FORMAT_VERSION})"
        )
    return meta


def read_rig(root: Path) -> Rig:
    return Rig.from_dict(read_metadata(root)["rig"])


def read_frames(root: Path) -> list[FrameRecord]:
    path = root / "frames.csv"
    if not path.is_file():
        raise DatasetFormatError(f"{root} is not a dataset folder: {path.name} is missing")
    frames = []
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != FRAME_COLUMNS:
            raise DatasetFormatError(f"{path}: columns must be {', '.join(FRAME_COLUMNS)}")
        for line_no, row in enumerate(reader, start=2):
            try:
                frames.append(
                    FrameRecord(
                        index=int(row["index"]),
                        sequence=int(row["sequence"]),
                        split=row["split"],
                        stamp_ns=int(row["stamp_ns"]),
                        translation=np.array([float(row[k]) for k in ("tx", "ty", "tz")]),
                        quat_xyzw=np.array([float(row[k]) for k in ("qx", "qy", "qz", "qw")]),
                    )
                )
            except (TypeError, ValueError) as exc:
                raise DatasetFormatError(f"{path}:{line_no}: {exc}") from exc
            # A NaN or inf label would only show up later as a NaN loss, far from its cause.
            last = frames[-1]
            if not (np.all(np.isfinite(last.translation)) and np.all(np.isfinite(last.quat_xyzw))):
                raise DatasetFormatError(f"{path}:{line_no}: the pose is not finite")
    return frames


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def load_folder(root: str | Path, split: str | None = None) -> FrameList:
    """A dataset folder as a `FrameList`; `split` = train, val, test or None (all frames)."""
    root = Path(root)
    if split is not None and split not in SPLITS:
        raise DatasetFormatError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    meta = read_metadata(root)
    rig = Rig.from_dict(meta["rig"])
    frames = [
        FrameEntry(
            image_paths=tuple(image_path(root, cam, f.index) for cam in rig.names),
            translation=f.translation,
            quat_xyzw=f.quat_xyzw,
            stamp_ns=f.stamp_ns,
            sequence=f.sequence,
        )
        for f in read_frames(root)
        if split is None or f.split == split
    ]
    return FrameList(rig, frames, name=f"{root.name}:{split or 'all'}", metadata=meta)
