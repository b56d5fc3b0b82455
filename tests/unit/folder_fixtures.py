"""A small dataset folder with random images, written with the format's own writers."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from pose_regressor.dataset_folder import FrameRecord, image_path, write_frames, write_metadata
from pose_regressor.rig import PinholeIntrinsics, Rig, RigCamera
from tests.unit.bundle_fixtures import CAMERA_SIZE

Q = np.array([0.0, 0.0, 0.0, 1.0])
SPLITS = ["train", "test", "test", "val", "test", "test"]


def write_folder(root: Path, cameras: tuple[str, ...]) -> Path:
    """Six camera sets of random images; the folder's rig may name more cameras than a bundle."""
    intrinsics = PinholeIntrinsics.from_hfov(*CAMERA_SIZE, 90.0)
    rig = Rig(tuple(RigCamera(name, intrinsics) for name in cameras))
    rng = np.random.default_rng(0)
    records = []
    for index, split in enumerate(SPLITS):
        translation = np.array([0.5 * index, 0.1 * index, 0.0])
        records.append(FrameRecord(index, 0, split, index * 100_000_000, translation, Q))
        for camera in cameras:
            path = image_path(root, camera, index)
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), rng.integers(0, 256, (CAMERA_SIZE[1], CAMERA_SIZE[0], 3), dtype=np.uint8))
    write_metadata(root, rig, 10.0, {s: SPLITS.count(s) for s in set(SPLITS)}, {})
    write_frames(root, records)
    return root
