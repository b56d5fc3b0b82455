"""The retrieval baseline: thumbnail descriptors, chunked nearest neighbours, retrieved poses."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from pose_regressor.rig import preset_rig
from pose_regressor_training.data.dataset import FrameEntry, FrameList
from pose_regressor_training.retrieval import nearest_neighbours, retrieve_poses, thumbnail_descriptors

W, H = 32, 24


def write_frames(folder: Path, images: np.ndarray, seed: int) -> FrameList:
    """A stereo FrameList over `images` [N, 2, H, W, 3] written as PNGs, with random poses."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    frames = []
    for i, cameras in enumerate(images):
        paths = []
        for c, image in enumerate(cameras):
            path = folder / f"{i:03d}_{c}.png"
            cv2.imwrite(str(path), image)
            paths.append(path)
        q = rng.normal(size=4)
        q = q / np.linalg.norm(q) * np.sign(q[3])
        frames.append(FrameEntry(tuple(paths), rng.normal(size=3), q, stamp_ns=i, sequence=0))
    return FrameList(preset_rig("stereo", W, H), frames)


@pytest.fixture
def training_images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 200, size=(12, 2, H, W, 3), dtype=np.uint8)


def test_a_test_set_identical_to_a_training_set_gets_that_sets_pose(
    training_images: np.ndarray, tmp_path: Path
) -> None:
    train = write_frames(tmp_path / "train", training_images, seed=1)
    picks = [7, 2, 11]
    # A uniform brightness change is taken out by the per-camera mean (no pixel clips at +20).
    brighter = np.clip(training_images[picks].astype(np.int16) + 20, 0, 255).astype(np.uint8)
    test = write_frames(tmp_path / "test", np.concatenate([training_images[picks], brighter]), seed=2)
    t, q, searched = retrieve_poses(train, test)
    expected = picks + picks
    np.testing.assert_array_equal(t, np.stack([train.frames[i].translation for i in expected]))
    np.testing.assert_array_equal(q, np.stack([train.frames[i].quat_xyzw for i in expected]))
    assert len(searched) == 12


def test_descriptors_are_unit_norm_and_a_flat_set_is_zero(tmp_path: Path) -> None:
    images = np.random.default_rng(3).integers(0, 256, size=(3, 2, H, W, 3), dtype=np.uint8)
    images[1] = 128  # both cameras flat
    descriptors, frames = thumbnail_descriptors(write_frames(tmp_path, images, seed=4))
    assert descriptors.shape == (3, 2 * 16 * 12) and descriptors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(descriptors, axis=1), [1.0, 0.0, 1.0], atol=1e-6)
    assert len(frames) == 3


def test_chunked_search_matches_one_full_similarity_matrix() -> None:
    rng = np.random.default_rng(5)
    database = rng.normal(size=(300, 20)).astype(np.float32)
    queries = rng.normal(size=(50, 20)).astype(np.float32)
    full = np.argmax(queries @ database.T, axis=1)
    np.testing.assert_array_equal(nearest_neighbours(queries, database, max_elements=700), full)
    np.testing.assert_array_equal(nearest_neighbours(queries, database, max_elements=1), full)
    with pytest.raises(ValueError, match="no frames"):
        nearest_neighbours(queries, database[:0])


def test_unreadable_training_images_are_left_out_with_skip_bad(
    training_images: np.ndarray, tmp_path: Path
) -> None:
    train = write_frames(tmp_path / "train", training_images, seed=1)
    train.frames[4].image_paths[1].write_bytes(b"")
    test = write_frames(tmp_path / "test", training_images[[4, 5]], seed=2)
    t, _, searched = retrieve_poses(train, test, skip_bad=True)
    assert len(searched) == 11
    assert not any(np.array_equal(row, train.frames[4].translation) for row in t)
    np.testing.assert_array_equal(t[1], train.frames[5].translation)
