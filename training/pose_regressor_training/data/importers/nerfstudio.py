"""nerfstudio / instant-ngp ``transforms.json``.

Each frame's ``transform_matrix`` is camera-to-world (``T_map_cam``) in OpenGL camera axes
(x right, y up, z backward); it becomes the optical frame (x right, y down, z forward) by
flipping y and z. ``file_path`` is relative to the json file's folder; instant-ngp files may
leave out the extension (.png, .jpg and .jpeg are tried), and a path written on Windows (with
backslashes, or ``.jpg`` for a file ``.JPG``) is found. Intrinsics ``fl_x, fl_y, cx, cy, w, h``
are read from the top level or per frame (a per-frame value wins; per-frame values that are
estimates of one lens, as Polycam's, are merged by `one_camera`), ``camera_angle_x`` (and
``camera_angle_y``, fields of view in radians) stand in for missing focal lengths, a missing
size is read from the first image there is, a missing principal point is the image centre. OpenCV
distortion ``k1, k2, p1, p2, k3`` is recorded as plumb_bob (a ``k4``, an r^8 term Metashape's exports
carry, is left out with a note); fisheye cameras (``camera_model`` OPENCV_FISHEYE, or instant-ngp's
``is_fisheye``) and equirectangular ones are refused.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pose_regressor.pose import from_matrix
from pose_regressor.rig import PLUMB_BOB_COEFFICIENTS, LensDistortion, PinholeIntrinsics
from pose_regressor_training.data.importers.common import (
    CameraTrack,
    ImportFormatError,
    PosedImage,
    check_distortion,
    check_intrinsics,
    find_file,
    read_text,
)
from pose_regressor_training.data.importers.one_camera import Camera, one_camera

# OpenGL camera axes -> optical axes: R_map_optical = R_map_gl · diag(1, -1, -1)
GL_TO_OPTICAL = np.diag([1.0, -1.0, -1.0, 1.0])
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG")
ROTATION_ATOL = 1e-3  # |R^T R - I| accepted (float32 exports), then projected onto a rotation
ANGLE_KEYS = ("camera_angle_x", "camera_angle_y")  # fields of view, radians
INTRINSIC_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h", *ANGLE_KEYS)
# nerfstudio's perspective models (its CAMERA_MODEL_TO_TYPE); SIMPLE_RADIAL and RADIAL carry k1 (k2)
PINHOLE_CAMERA_MODELS = ("OPENCV", "PINHOLE", "SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL")


def find_transforms(path: Path) -> Path:
    """The json file itself, or ``transforms.json`` inside a folder."""
    others: list[str] = []
    if path.is_dir():
        # the NeRF synthetic (Blender) scenes have transforms_train/_val/_test.json and no transforms.json
        others = sorted(p.name for p in path.glob("transforms*.json") if p.name != "transforms.json")
        path = path / "transforms.json"
    if not path.is_file():
        hint = f" (the folder holds {', '.join(others)}: give one of them)" if others else ""
        raise ImportFormatError(f"transforms file {path} does not exist{hint}")
    return path


def _load_json(path: Path) -> dict[str, Any]:
    text = read_text(path, "transforms file")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImportFormatError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict) or not isinstance(data.get("frames"), list):
        raise ImportFormatError(f"{path}: expected an object with a 'frames' list")
    return data


def _number(data: dict[str, Any], key: str, where: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ImportFormatError(f"{where}: {key} must be a finite number, got {value!r}")
    return float(value)


def _check_angle(value: float | None, key: str, where: str) -> None:
    """A field of view in radians: 0 divides by zero, pi or more gives a focal length of about
    zero or below, and degrees by mistake (70) give one far too short, imported without a word."""
    if value is not None and not 0 < value < math.pi:
        raise ImportFormatError(
            f"{where}: {key} must be in radians, between 0 and pi (exclusive), got {value:g}"
        )


def resolve_image(base: Path, file_path: str) -> Path:
    """``base / file_path``, or with an image extension added when the file has none, or the case
    of its extension changed, or its backslashes read as folder separators, or its names in the
    other Unicode normal form (`find_file`), when that file exists."""
    path = base / file_path
    if "\\" in file_path and find_file(path) is None:
        # written on Windows (instant-ngp's colmap2nerf joins os.path.relpath of --images into it);
        # on Linux a backslash is part of the name, and no image was found
        path = base / file_path.replace("\\", "/")
    if path.suffix.lower() in {s.lower() for s in IMAGE_SUFFIXES}:
        # "frame.jpg" for frame.JPG: one file on the case-blind disks of Windows and macOS
        # where the file was written, two names on Linux
        same = [s for s in IMAGE_SUFFIXES if s.lower() == path.suffix.lower()]
        candidates = [path, *(path.with_suffix(s) for s in same)]
    else:
        candidates = [path, *(path.with_name(path.name + s) for s in IMAGE_SUFFIXES)]
    for candidate in candidates:
        found = find_file(candidate)
        if found is not None:
            return found
    return path


def _first_image_size(base: Path, frames: list[Any], where: str) -> tuple[int, int]:
    """The size of the first image named by `frames` that exists: with --skip-missing the first
    frames' images may be gone (a Blender scene without its r_0.png was refused for want of it)."""
    for frame in frames:
        file_path = frame.get("file_path") if isinstance(frame, dict) else None
        if isinstance(file_path, str) and file_path and (path := resolve_image(base, file_path)).is_file():
            return _image_size(path, where)
    raise ImportFormatError(f"{where}: no w and h, and none of the {len(frames)} images named exists")


def _image_size(path: Path, where: str) -> tuple[int, int]:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ImportFormatError(f"{where}: no w and h, and image {path} cannot be read for its size")
    return int(image.shape[1]), int(image.shape[0])


def _intrinsics(
    values: dict[str, float | None], where: str, size_of_images: tuple[int, int] | None
) -> PinholeIntrinsics:
    width, height = values["w"], values["h"]
    if width is None or height is None:
        if size_of_images is None:
            raise ImportFormatError(f"{where}: no image size (w, h)")
        width, height = size_of_images
    fx, fy = values["fl_x"], values["fl_y"]
    angle_x, angle_y = values["camera_angle_x"], values["camera_angle_y"]
    if fx is None and angle_x is not None:
        fx = 0.5 * width / math.tan(0.5 * angle_x)
    if fy is None and angle_y is not None:
        fy = 0.5 * height / math.tan(0.5 * angle_y)
    fx, fy = fx if fx is not None else fy, fy if fy is not None else fx
    if fx is None or fy is None:
        raise ImportFormatError(f"{where}: no focal length (fl_x, fl_y or camera_angle_x)")
    cx = values["cx"] if values["cx"] is not None else width / 2.0
    cy = values["cy"] if values["cy"] is not None else height / 2.0
    if width != int(width) or height != int(height):
        raise ImportFormatError(f"{where}: w and h must be whole pixels, got {width} x {height}")
    return check_intrinsics(PinholeIntrinsics(int(width), int(height), fx, fy, cx, cy), where)


def _distortion(values: dict[str, Any], where: str) -> LensDistortion | None:
    model = values.get("camera_model", "OPENCV")
    if model not in PINHOLE_CAMERA_MODELS:
        raise ImportFormatError(
            f"{where}: camera_model {model!r} is not supported ({', '.join(PINHOLE_CAMERA_MODELS)} are)"
        )
    fisheye = values.get("is_fisheye", False)
    if fisheye is not True and fisheye is not False:  # "true" or 1: a fisheye camera, written loosely
        raise ImportFormatError(f"{where}: is_fisheye must be true or false, got {fisheye!r}")
    if fisheye:
        # instant-ngp's colmap2nerf writes no camera_model: is_fisheye marks a COLMAP fisheye model,
        # whose k1..k4 were recorded as plumb_bob k1, k2 and k3 without a word
        raise ImportFormatError(
            f"{where}: is_fisheye is true (k1..k4 are fisheye coefficients); fisheye cameras are not "
            "supported: undistort the images first (colmap image_undistorter)"
        )
    coefficients = {k: _number(values, k, where) for k in PLUMB_BOB_COEFFICIENTS}
    if all(v is None for v in coefficients.values()):
        return None
    present = {k: v for k, v in coefficients.items() if v is not None}
    return check_distortion(LensDistortion.from_coefficients(present), where)


def _camera_pose(frame: dict[str, Any], where: str) -> tuple[np.ndarray, np.ndarray]:
    matrix = frame.get("transform_matrix")
    try:
        m = np.asarray(matrix, dtype=float)
    except (TypeError, ValueError):
        raise ImportFormatError(f"{where}: transform_matrix must be a 4 x 4 matrix of numbers") from None
    if m.shape == (3, 4):  # some exports leave out the bottom row
        m = np.vstack([m, [0.0, 0.0, 0.0, 1.0]])
    if m.shape != (4, 4):
        raise ImportFormatError(f"{where}: transform_matrix must be a 4 x 4 matrix, got shape {m.shape}")
    try:
        return from_matrix(m @ GL_TO_OPTICAL, atol=ROTATION_ATOL)
    except ValueError as exc:
        raise ImportFormatError(f"{where}: transform_matrix: {exc}") from None


def read_transforms(path: Path) -> CameraTrack:
    """The frames of a ``transforms.json`` (or a folder holding one) with ``T_map_cam`` in optical axes."""
    json_path = find_transforms(path)
    data = _load_json(json_path)
    base = json_path.parent
    images: list[PosedImage] = []
    size_of_images: tuple[int, int] | None = None  # of the first image, where w or h is missing
    cameras: list[Camera] = []
    k4s: list[float] = []  # non-zero k4 of the frames
    for number, frame in enumerate(data["frames"]):
        where = f"{json_path}: frames[{number}]"
        if not isinstance(frame, dict):
            raise ImportFormatError(f"{where} must be an object")
        file_path = frame.get("file_path")
        if not isinstance(file_path, str) or not file_path:
            raise ImportFormatError(f"{where}: file_path must be a non-empty string")
        image = resolve_image(base, file_path)
        merged = {**data, **{k: v for k, v in frame.items() if k != "frames"}}
        values = {k: _number(merged, k, where) for k in INTRINSIC_KEYS}
        for key in ANGLE_KEYS:
            _check_angle(values[key], key, where if key in frame else str(json_path))
        if size_of_images is None and (values["w"] is None or values["h"] is None):
            size_of_images = _first_image_size(base, data["frames"], where)
        cameras.append((_intrinsics(values, where, size_of_images), _distortion(merged, where)))
        if k4 := _number(merged, "k4", where):
            k4s.append(k4)
        t, q = _camera_pose(frame, where)
        images.append(PosedImage(file_path, image, t, q))
    if not images:
        raise ImportFormatError(f"{json_path} has no frames")
    (intrinsics, distortion), merged_note = one_camera(cameras, str(json_path), "a mono rig has one")
    source = f"transforms file {json_path}"
    notes = (merged_note,) if merged_note is not None else ()
    if k4s:
        # nerfstudio reads k4 as an r^8 radial term (Metashape's exports fill it); plumb_bob has none
        largest = max(k4s, key=abs)
        notes = (
            *notes,
            f"k4 {largest:g} ({len(k4s)} of {len(images)} frames), an r^8 radial term plumb_bob has no "
            "place for, is left out of the recorded distortion",
        )
    return CameraTrack(intrinsics, distortion, images, source, "nerfstudio", notes, inputs=(json_path,))
