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
        distortion:           # optional, recorded as calibrated; images are not undistorted
          model: plumb_bob    # OpenCV's radial-tangential model (CameraInfo's D order)
          k1: -0.02
          k2: 0.0
          p1: 0.0
          p2: 0.0
          k3: 0.0
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
DISTORTION_MODELS = ("plumb_bob",)
PLUMB_BOB_COEFFICIENTS = ("k1", "k2", "p1", "p2", "k3")  # the order of sensor_msgs/CameraInfo's D
# Calibrated plumb_bob coefficients stay within tens even for wide-angle lenses; k1 1e300 was
# imported, and projecting with it overflows to inf.
DISTORTION_COEFFICIENT_LIMIT = 1e3


def distortion_coefficient_problem(key: str, value: float) -> str | None:
    """Why a plumb_bob coefficient `key` cannot be `value` (beyond `DISTORTION_COEFFICIENT_LIMIT`
    or nan), or None; dataset.yaml's rig and the importers say it alike."""
    if abs(value) <= DISTORTION_COEFFICIENT_LIMIT:
        return None
    return f"distortion {key} must be within ±{DISTORTION_COEFFICIENT_LIMIT:g} (a sane range), got {value:g}"


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
        # bounded below 180: tan(hfov/2) grows without bound there and fx falls to 0
        if not 1.0 <= hfov_deg < 179.0:
            raise RigError(f"hfov_deg must be in [1, 179), got {hfov_deg}")
        fx = 0.5 * width / math.tan(math.radians(hfov_deg) / 2.0)
        # with pixel centres at u + 0.5 (see the class docstring), W/2 is the exact image centre
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
class LensDistortion:
    """A camera's lens distortion as calibrated, OpenCV's plumb_bob model (radial k1, k2, k3;
    tangential p1, p2). Recorded, not applied: images stay as captured and a model learns the lens."""

    k1: float = 0.0
    k2: float = 0.0
    p1: float = 0.0
    p2: float = 0.0
    k3: float = 0.0
    model: str = "plumb_bob"

    @property
    def coefficients(self) -> tuple[float, ...]:
        """(k1, k2, p1, p2, k3): CameraInfo's D for `distortion_model: plumb_bob`."""
        return (self.k1, self.k2, self.p1, self.p2, self.k3)

    @classmethod
    def from_coefficients(cls, values: dict[str, float]) -> LensDistortion:
        """From k1, k2, p1, p2, k3 by name; a missing one is 0."""
        k1, k2, p1, p2, k3 = (float(values.get(key, 0.0)) for key in PLUMB_BOB_COEFFICIENTS)
        return cls(k1=k1, k2=k2, p1=p1, p2=p2, k3=k3)

    def to_dict(self) -> dict[str, Any]:
        values = zip(PLUMB_BOB_COEFFICIENTS, self.coefficients, strict=True)
        return {"model": self.model, **{k: float(v) for k, v in values}}

    @classmethod
    def from_dict(cls, data: Any) -> LensDistortion:
        """RigError saying what is wrong (the caller adds where)."""
        if not isinstance(data, dict):
            raise RigError("distortion must be a mapping with model and coefficients")
        model = data.get("model", "plumb_bob")
        if model not in DISTORTION_MODELS:
            raise RigError(f"distortion model must be one of {', '.join(DISTORTION_MODELS)}, got {model!r}")
        unknown = sorted(str(k) for k in data if k != "model" and k not in PLUMB_BOB_COEFFICIENTS)
        if unknown:
            known = ", ".join(PLUMB_BOB_COEFFICIENTS)
            raise RigError(f"unknown distortion key(s) {', '.join(unknown)} (plumb_bob has {known})")
        values: dict[str, float] = {}
        for key in PLUMB_BOB_COEFFICIENTS:
            raw = data.get(key, 0.0)
            if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
                raise RigError(f"distortion {key} must be a finite number, got {raw!r}")
            problem = distortion_coefficient_problem(key, raw)
            if problem:
                raise RigError(problem)
            values[key] = float(raw)
        return cls.from_coefficients(values)


@dataclass(frozen=True)
class RigCamera:
    """One camera: its name (topic `/<name>/image_raw`), intrinsics, `T_base_cam` and, where
    known, its lens distortion (None: not recorded)."""

    name: str
    intrinsics: PinholeIntrinsics
    translation: FloatArray = field(default_factory=lambda: np.zeros(3))
    rotation_xyzw: FloatArray = field(default_factory=lambda: np.array([0.0, 0.0, 0.0, 1.0]))
    distortion: LensDistortion | None = None

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


def mounting_difference(
    camera: RigCamera, trained: RigCamera, max_angle_deg: float = 1.0, max_offset_m: float = 0.01
) -> str | None:
    """How `camera` sits on the robot unlike `trained` (the same name in the training rig): its
    view turned by more than `max_angle_deg`, or moved by more than `max_offset_m`; None when
    alike. A pose regressor takes the view of each input slot as the trained camera's, so a camera
    mounted otherwise gives confident, wrong poses, not an error."""
    turned = (
        Rotation.from_quat(camera.rotation_xyzw) * Rotation.from_quat(trained.rotation_xyzw).inv()
    ).magnitude()
    moved = float(np.linalg.norm(np.asarray(camera.translation) - np.asarray(trained.translation)))
    if math.degrees(turned) <= max_angle_deg and moved <= max_offset_m:
        return None
    return (
        f"mounted {math.degrees(turned):.1f} deg turned and {moved:.3f} m away from where it was in training"
    )


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
        """Plain Python numbers only (YAML's safe dumper refuses numpy scalars)."""
        return {"cameras": [_camera_to_dict(c) for c in self.cameras]}

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


def _camera_to_dict(c: RigCamera) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": c.name,
        "width": int(c.intrinsics.width),
        "height": int(c.intrinsics.height),
        "fx": float(c.intrinsics.fx),
        "fy": float(c.intrinsics.fy),
        "cx": float(c.intrinsics.cx),
        "cy": float(c.intrinsics.cy),
        "translation": [float(x) for x in c.translation],
        "rotation_xyzw": [float(x) for x in c.rotation_xyzw],
    }
    if c.distortion is not None:  # written only when known: rigs without one read as before
        data["distortion"] = c.distortion.to_dict()
    return data


def _camera_from_dict(index: int, data: Any, default_size: tuple[int, int] | None) -> RigCamera:
    where = f"cameras[{index}]"
    if not isinstance(data, dict):
        raise RigError(f"{where} must be a mapping")
    name = data.get("name")
    # the name becomes the topic /<name>/image_raw and the frame <name>_optical_frame
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
        # the project's canonical hemisphere, w >= 0 (see pose.py)
        quat = quat if quat[3] >= 0 else -quat
    else:
        quat = forward_camera_rotation(math.radians(float(data.get("yaw_deg", 0.0))))
    distortion = None
    if data.get("distortion") is not None:
        try:
            distortion = LensDistortion.from_dict(data["distortion"])
        except RigError as exc:
            raise RigError(f"{where} ({name}): {exc}") from None
    return RigCamera(name, intr, translation, quat, distortion)
