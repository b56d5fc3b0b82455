"""Camera rigs: pinhole intrinsics and extrinsics of 1..N cameras mounted on `base_link`.

Frames follow REP-103: `base_link` is x forward, y left, z up; a camera's optical frame
`<camera>_optical_frame` is z forward (along the optical axis), x right, y down.
`T_base_cam` maps points in the optical frame to `base_link`.

A rig YAML looks like::

    cameras:
      - name: front
        width: 160
        height: 120
        hfov_deg: 90          # or fx, fy, cx, cy explicitly
        translation: [0.1, 0.0, 0.0]          # T_base_cam, metres
        rotation_xyzw: [-0.5, 0.5, -0.5, 0.5] # T_base_cam, optical -> base
        # or instead of rotation_xyzw: yaw_deg: 0 (a forward-looking camera yawed about base z)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.spatial.transform import Rotation

from pose_regressor.files import read_yaml

FloatArray = NDArray[np.float64]

# Optical frame axes expressed in base_link for a camera looking along base +x:
# optical z (forward) -> base +x, optical x (right) -> base -y, optical y (down) -> base -z.
R_BASE_OPTICAL_FORWARD = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])

PRESETS = ("mono", "stereo", "quad")


class RigError(ValueError):
    """A rig description is invalid."""


@dataclass(frozen=True)
class PinholeIntrinsics:
    """Pinhole model; pixel (u, v) has its centre at (u + 0.5, v + 0.5) in these coordinates."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    @classmethod
    def from_hfov(cls, width: int, height: int, hfov_deg: float) -> PinholeIntrinsics:
        if not 1.0 <= hfov_deg < 179.0:
            raise RigError(f"hfov_deg must be in [1, 179), got {hfov_deg}")
        fx = 0.5 * width / math.tan(math.radians(hfov_deg) / 2.0)
        return cls(width, height, fx, fx, width / 2.0, height / 2.0)

    def matrix(self) -> FloatArray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def pixel_rays(self) -> FloatArray:
        """Unnormalized ray directions (H, W, 3) in the optical frame through every pixel centre."""
        u = (np.arange(self.width) + 0.5 - self.cx) / self.fx
        v = (np.arange(self.height) + 0.5 - self.cy) / self.fy
        uu, vv = np.meshgrid(u, v)
        return np.stack([uu, vv, np.ones_like(uu)], axis=-1)

    def project(self, points_cam: FloatArray) -> FloatArray:
        """Continuous pixel coordinates (..., 2) of optical-frame points (..., 3) with z > 0."""
        z = points_cam[..., 2:3]
        return np.concatenate(
            [self.fx * points_cam[..., 0:1] / z + self.cx, self.fy * points_cam[..., 1:2] / z + self.cy],
            axis=-1,
        )

    def resized(self, width: int, height: int) -> PinholeIntrinsics:
        sx, sy = width / self.width, height / self.height
        return PinholeIntrinsics(width, height, self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy)


@dataclass(frozen=True)
class RigCamera:
    """One camera: its name (topic `/<name>/image_raw`), intrinsics and `T_base_cam`."""

    name: str
    intrinsics: PinholeIntrinsics
    translation: FloatArray = field(default_factory=lambda: np.zeros(3))
    rotation_xyzw: FloatArray = field(default_factory=lambda: np.array([0.0, 0.0, 0.0, 1.0]))

    @property
    def optical_frame(self) -> str:
        return f"{self.name}_optical_frame"

    @property
    def image_topic(self) -> str:
        return f"/{self.name}/image_raw"

    def rotation_matrix(self) -> FloatArray:
        matrix: FloatArray = Rotation.from_quat(self.rotation_xyzw).as_matrix()
        return matrix

    def yaw(self) -> float:
        """Yaw (rad) about base z of the optical axis, for the track-augmentation check."""
        axis = self.rotation_matrix()[:, 2]
        return math.atan2(axis[1], axis[0])


@dataclass(frozen=True)
class Rig:
    cameras: tuple[RigCamera, ...]

    def __post_init__(self) -> None:
        if not self.cameras:
            raise RigError("a rig needs at least one camera")
        names = [c.name for c in self.cameras]
        if len(set(names)) != len(names):
            raise RigError(f"camera names must be unique, got {names}")

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.cameras]

    def to_dict(self) -> dict[str, Any]:
        return {
            "cameras": [
                {
                    "name": c.name,
                    "width": c.intrinsics.width,
                    "height": c.intrinsics.height,
                    "fx": c.intrinsics.fx,
                    "fy": c.intrinsics.fy,
                    "cx": c.intrinsics.cx,
                    "cy": c.intrinsics.cy,
                    "translation": [float(x) for x in c.translation],
                    "rotation_xyzw": [float(x) for x in c.rotation_xyzw],
                }
                for c in self.cameras
            ]
        }

    @classmethod
    def from_dict(cls, data: Any, *, default_size: tuple[int, int] | None = None) -> Rig:
        if not isinstance(data, dict) or not isinstance(data.get("cameras"), list):
            raise RigError("a rig must be a mapping with a list under 'cameras'")
        return cls(tuple(_camera_from_dict(i, c, default_size) for i, c in enumerate(data["cameras"])))

    @classmethod
    def from_yaml(cls, path: str | Path, *, default_size: tuple[int, int] | None = None) -> Rig:
        path = Path(path)
        data = read_yaml(path, "rig file", RigError)
        try:
            return cls.from_dict(data, default_size=default_size)
        except RigError as exc:
            raise RigError(f"{path}: {exc}") from exc


def forward_camera_rotation(yaw_rad: float) -> FloatArray:
    """`T_base_cam` rotation (xyzw) of a level camera looking along base +x, yawed about base z."""
    rot = Rotation.from_euler("z", yaw_rad) * Rotation.from_matrix(R_BASE_OPTICAL_FORWARD)
    quat: FloatArray = rot.as_quat()
    return quat if quat[3] >= 0 else -quat


def preset_rig(name: str, width: int = 160, height: int = 120, hfov_deg: float = 90.0) -> Rig:
    """`mono`: one forward camera; `stereo`: two forward cameras 12 cm apart;
    `quad`: four cameras yawed 0, 90, 180, 270 deg, each 10 cm out from the centre."""
    intr = PinholeIntrinsics.from_hfov(width, height, hfov_deg)
    mount_height = 0.0
    if name == "mono":
        specs: Sequence[tuple[str, float, tuple[float, float, float]]] = [("front", 0.0, (0.1, 0.0, 0.0))]
    elif name == "stereo":
        specs = [("left", 0.0, (0.1, 0.06, 0.0)), ("right", 0.0, (0.1, -0.06, 0.0))]
    elif name == "quad":
        specs = [
            (cam, yaw, (0.1 * math.cos(yaw), 0.1 * math.sin(yaw), mount_height))
            for cam, yaw in zip(
                ("front", "left", "back", "right"), np.radians([0, 90, 180, 270]), strict=True
            )
        ]
    else:
        raise RigError(f"unknown rig preset {name!r}; choose one of {', '.join(PRESETS)} or give a YAML file")
    return Rig(
        tuple(
            RigCamera(cam, intr, np.array(offset, dtype=float), forward_camera_rotation(float(yaw)))
            for cam, yaw, offset in specs
        )
    )


def load_rig(spec: str, width: int = 160, height: int = 120) -> Rig:
    """A preset name or a path to a rig YAML (cameras without a size get width x height)."""
    if spec in PRESETS:
        return preset_rig(spec, width, height)
    if not Path(spec).exists():
        presets = ", ".join(PRESETS)
        raise RigError(f"unknown rig {spec!r}: neither a preset ({presets}) nor an existing YAML file")
    return Rig.from_yaml(spec, default_size=(width, height))


def _camera_from_dict(index: int, data: Any, default_size: tuple[int, int] | None) -> RigCamera:
    where = f"cameras[{index}]"
    if not isinstance(data, dict):
        raise RigError(f"{where} must be a mapping")
    name = data.get("name")
    if not isinstance(name, str) or not name or "/" in name:
        raise RigError(f"{where}.name must be a non-empty string without '/', got {name!r}")
    try:
        width = int(data.get("width", default_size[0] if default_size else 0))
        height = int(data.get("height", default_size[1] if default_size else 0))
    except (TypeError, ValueError) as exc:
        raise RigError(f"{where} ({name}): width/height must be integers") from exc
    if width <= 0 or height <= 0:
        raise RigError(f"{where} ({name}): width and height must be positive, got {width}x{height}")
    if "hfov_deg" in data:
        intr = PinholeIntrinsics.from_hfov(width, height, float(data["hfov_deg"]))
    elif all(k in data for k in ("fx", "fy")):
        intr = PinholeIntrinsics(
            width,
            height,
            float(data["fx"]),
            float(data["fy"]),
            float(data.get("cx", width / 2.0)),
            float(data.get("cy", height / 2.0)),
        )
    else:
        raise RigError(f"{where} ({name}): give either hfov_deg or fx and fy")
    if intr.fx <= 0 or intr.fy <= 0:
        raise RigError(f"{where} ({name}): focal lengths must be positive")
    translation = np.asarray(data.get("translation", [0.0, 0.0, 0.0]), dtype=float)
    if translation.shape != (3,) or not np.all(np.isfinite(translation)):
        raise RigError(f"{where} ({name}): translation must be three finite numbers")
    if "rotation_xyzw" in data:
        quat = np.asarray(data["rotation_xyzw"], dtype=float)
        if quat.shape != (4,) or not np.all(np.isfinite(quat)) or np.linalg.norm(quat) < 1e-9:
            raise RigError(f"{where} ({name}): rotation_xyzw must be four finite numbers, not all zero")
        quat = quat / np.linalg.norm(quat)
        quat = quat if quat[3] >= 0 else -quat
    else:
        quat = forward_camera_rotation(math.radians(float(data.get("yaw_deg", 0.0))))
    return RigCamera(name, intr, translation, quat)
