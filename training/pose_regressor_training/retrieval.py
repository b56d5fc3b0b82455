"""Nearest-neighbour image retrieval, the baseline every evaluation compares the regression with.

Each camera set becomes a thumbnail descriptor: every camera resized to 16x12 grayscale, each
camera's mean subtracted (a global exposure change moves no descriptor), the cameras concatenated
and L2-normalised. A test set predicts the pose of the training set of highest cosine similarity.
A regression that does not beat this has learned no more than a lookup table of its training views.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from pose_regressor_training.data.dataset import FrameList, PoseDataset

THUMBNAIL_SIZE = (16, 12)  # (width, height) per camera
# Similarities computed at once: query rows per chunk x training rows stays under this many floats.
MAX_SIMILARITY_ELEMENTS = 16_000_000  # 64 MB of float32

# ITU-R BT.601 luma, as cv2.COLOR_RGB2GRAY
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def thumbnail_descriptors(frames: FrameList, skip_bad: bool = False) -> tuple[NDArray[np.float32], FrameList]:
    """Unit-norm descriptors [N, T * 16 * 12] of the camera sets of `frames` (zeros for a set of
    flat images, which is then similar to nothing) and the frames they describe (with `skip_bad`,
    those whose images could all be read)."""
    width, height = THUMBNAIL_SIZE
    # Thumbnails are small enough to keep (23 MB for 10,000 quad sets): each image is decoded once.
    dataset = PoseDataset(frames, THUMBNAIL_SIZE, preload=True, progress=False, skip_bad=skip_bad)
    out = np.empty((len(dataset), len(frames.rig.names) * width * height), dtype=np.float32)
    for i in range(len(dataset)):
        gray = dataset.images(i).astype(np.float32) @ _LUMA  # [T, H, W]
        gray -= gray.mean(axis=(1, 2), keepdims=True)
        out[i] = gray.reshape(-1)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    np.divide(out, norms, out=out, where=norms > 0)
    out[norms[:, 0] == 0] = 0.0
    return out, dataset.frame_list


def nearest_neighbours(
    queries: NDArray[np.float32],
    database: NDArray[np.float32],
    max_elements: int = MAX_SIMILARITY_ELEMENTS,
) -> NDArray[np.int64]:
    """Index in `database` of the most cosine-similar row for each row of `queries` (both
    unit-norm; ties go to the first row), in chunks of at most `max_elements` similarities."""
    if len(database) == 0:
        raise ValueError("the retrieval database has no frames")
    chunk = max(1, max_elements // len(database))
    best = np.empty(len(queries), dtype=np.int64)
    for start in range(0, len(queries), chunk):
        best[start : start + chunk] = np.argmax(queries[start : start + chunk] @ database.T, axis=1)
    return best


def retrieve_poses(
    train: FrameList, test: FrameList, skip_bad: bool = False
) -> tuple[NDArray[np.float64], NDArray[np.float64], FrameList]:
    """The poses (t [M, 3], q xyzw [M, 4]) of the training set nearest to each test set, with the
    training frames searched (with `skip_bad`, those whose images could all be read).

    `test` must have readable images: its poses are one per frame of `test`."""
    if train.rig.names != test.rig.names:
        raise ValueError(f"training cameras {train.rig.names} differ from the test cameras {test.rig.names}")
    queries, _ = thumbnail_descriptors(test)
    database, train = thumbnail_descriptors(train, skip_bad)
    nearest = nearest_neighbours(queries, database)
    t = np.stack([train.frames[i].translation for i in nearest])
    q = np.stack([train.frames[i].quat_xyzw for i in nearest])
    return t, q, train
