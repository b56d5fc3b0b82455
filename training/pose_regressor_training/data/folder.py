"""The dataset folder format, as training reads it: the format itself lives in the robot package
(`pose_regressor.dataset_folder`, so `pose-regressor eval-folder` reads it without torch); this
module adds `load_folder`, which makes a torch-side `FrameList` of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pose_regressor.dataset_folder import (
    FORMAT_NAME,
    FORMAT_VERSION,
    FRAME_COLUMNS,
    MAX_FRAME_ROWS,
    QUAT_NORM_TOL,
    SPLITS,
    DatasetFormatError,
    FrameRecord,
    check_position_reach,
    check_split,
    image_path,
    plain_yaml_value,
    read_frames,
    read_metadata,
    read_rig,
    rig_from_metadata,
    write_frames,
    write_metadata,
)

if TYPE_CHECKING:  # imported where used: writing a folder (`pose-train synth`) needs no torch
    from pose_regressor_training.data.dataset import FrameList

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "FRAME_COLUMNS",
    "MAX_FRAME_ROWS",
    "QUAT_NORM_TOL",
    "SPLITS",
    "DatasetFormatError",
    "FrameRecord",
    "check_position_reach",
    "check_split",
    "image_path",
    "load_folder",
    "plain_yaml_value",
    "read_frames",
    "read_metadata",
    "read_rig",
    "rig_from_metadata",
    "write_frames",
    "write_metadata",
]


def load_folder(root: str | Path, split: str | None = None) -> FrameList:
    """A dataset folder as a `FrameList`; `split` = train, val, test or None (all frames)."""
    from pose_regressor_training.data.dataset import FrameEntry, FrameList

    root = Path(root)
    check_split(split)
    meta = read_metadata(root)
    rig = rig_from_metadata(root, meta)
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
