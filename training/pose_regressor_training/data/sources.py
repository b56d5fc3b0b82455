"""One entry point for every dataset kind, and the single-camera convention the public benchmarks share.

`load_dataset(kind, root, split, **options)` returns a `FrameList` for

* ``"folder"``    our dataset folder (`data/folder.py`); split ``train``, ``val`` or ``test``;
* ``"7scenes"``   Microsoft 7-Scenes (`data/seven_scenes.py`); split ``train`` or ``test``;
* ``"cambridge"`` Cambridge Landmarks (`data/cambridge.py`); split ``train`` or ``test``.

The benchmarks publish only a train/test split: asking them for ``"val"`` raises
`DatasetFormatError` (hold out whole training sequences for validation instead).

Pose convention, for every kind: a frame's pose is ``T_map_base`` (maps `base_link` points into
`map`; metres; unit quaternion xyzw with w >= 0), `base_link` is REP-103 (x forward, y left,
z up). The benchmarks give one camera's pose ``T_map_cam`` in its optical frame (x right, y down,
z forward), so their rig is one camera named ``"camera"`` at the base origin looking along base +x:
``T_base_cam = (0, R_BASE_OPTICAL_FORWARD)``, and ``T_map_base = T_map_cam · T_base_cam⁻¹``.
The base position is therefore the camera centre, base x is the optical axis, base z is the
image's "up" (−optical y); nothing is assumed about the map's own up direction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pose_regressor.pose import compose, inverse
from pose_regressor.rig import PinholeIntrinsics, Rig, RigCamera, forward_camera_rotation
from pose_regressor_training.data.dataset import FrameList
from pose_regressor_training.data.folder import DatasetFormatError

FloatArray = npt.NDArray[np.float64]

DATASET_KINDS = ("folder", "7scenes", "cambridge")
BENCHMARK_SPLITS = ("train", "test")
SINGLE_CAMERA_NAME = "camera"

# T_base_cam of the single benchmark camera: at the base origin, optical axis along base +x.
_T_BASE_CAM = (np.zeros(3), forward_camera_rotation(0.0))
_T_CAM_BASE = inverse(*_T_BASE_CAM)


def single_camera_rig(intrinsics: PinholeIntrinsics) -> Rig:
    """The rig of a single-camera benchmark: camera ``"camera"`` at the base origin looking along base +x."""
    return Rig((RigCamera(SINGLE_CAMERA_NAME, intrinsics, _T_BASE_CAM[0].copy(), _T_BASE_CAM[1].copy()),))


def base_pose_from_camera_pose(
    t_map_cam: npt.ArrayLike, q_map_cam: npt.ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """``T_map_base = T_map_cam · T_cam_base`` for the single-camera rig (q xyzw, canonical w >= 0).

    ``T_map_cam`` maps optical-frame points (x right, y down, z forward) into the map.
    """
    return compose(t_map_cam, q_map_cam, *_T_CAM_BASE)


def check_benchmark_split(split: str, dataset: str) -> None:
    """Reject splits a benchmark does not publish (it has train and test only)."""
    if split == "val":
        raise DatasetFormatError(
            f"{dataset} has no validation split (only {' and '.join(BENCHMARK_SPLITS)}); "
            "hold out whole training sequences for validation instead"
        )
    if split not in BENCHMARK_SPLITS:
        choices = ", ".join(BENCHMARK_SPLITS)
        raise DatasetFormatError(f"{dataset} split must be one of {choices}, got {split!r}")


def load_dataset(kind: str, root: str | Path, split: str, **options: Any) -> FrameList:
    """Load one split of a dataset of the given kind as a `FrameList` of ``T_map_base`` poses.

    Args:
        kind: ``"folder"``, ``"7scenes"`` or ``"cambridge"``.
        root: the dataset's root folder (see each loader for its layout).
        split: ``train``/``val``/``test`` for folders, ``train``/``test`` for the benchmarks.
        options: keyword options of the loader (`load_seven_scenes`, `load_cambridge`;
            ``"folder"`` takes none).

    Raises:
        ValueError: unknown kind or option for that kind.
        DatasetFormatError: unknown split, missing or malformed files (the message names the file).
    """
    # Imported here: the loaders import this module's single-camera helpers.
    from pose_regressor_training.data.cambridge import load_cambridge
    from pose_regressor_training.data.folder import SPLITS, load_folder
    from pose_regressor_training.data.seven_scenes import load_seven_scenes

    if kind == "folder":
        _reject_options(kind, options, ())
        if split not in SPLITS:
            raise DatasetFormatError(f"folder split must be one of {', '.join(SPLITS)}, got {split!r}")
        return load_folder(root, split)
    if kind == "7scenes":
        _reject_options(kind, options, ("scene", "rotation_atol", "fps", "check_images"))
        return load_seven_scenes(root, split, **options)
    if kind == "cambridge":
        _reject_options(kind, options, ("focal_px_1920", "image_size", "fps", "check_images"))
        return load_cambridge(root, split, **options)
    raise ValueError(f"unknown dataset kind {kind!r}; choose one of {', '.join(DATASET_KINDS)}")


def _reject_options(kind: str, options: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        valid = ", ".join(allowed) if allowed else "none"
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for dataset kind {kind!r} (valid: {valid})")
