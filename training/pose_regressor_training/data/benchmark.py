"""The single-camera convention the public benchmarks (7-Scenes, Cambridge Landmarks) share.

The benchmarks give one camera's pose ``T_map_cam`` in its optical frame (x right, y down,
z forward), so their rig is one camera named ``"camera"`` at the base origin looking along base +x:
``T_base_cam = (0, R_BASE_OPTICAL_FORWARD)``, and ``T_map_base = T_map_cam · T_base_cam⁻¹``.
The base position is therefore the camera centre, base x is the optical axis, base z is the
image's "up" (−optical y); nothing is assumed about the map's own up direction.
The benchmarks publish only a train/test split.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from pose_regressor.pose import compose, inverse
from pose_regressor.rig import PinholeIntrinsics, Rig, RigCamera, forward_camera_rotation
from pose_regressor_training.data.folder import DatasetFormatError

FloatArray = npt.NDArray[np.float64]

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
