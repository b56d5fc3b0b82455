"""COLMAP sparse models: ``cameras.txt`` + ``images.txt`` or ``cameras.bin`` + ``images.bin``.

COLMAP stores, per registered image, the world-to-camera transform ``T_cam_world``
(quaternion qw qx qy qz, translation tx ty tz) in the OpenCV optical frame (x right, y down,
z forward); the camera pose is its inverse. Pixel centres are at (u + 0.5, v + 0.5), the same
convention as `PinholeIntrinsics`, so fx, fy, cx, cy are taken as they are.

Binary layout (little-endian; COLMAP's ``src/colmap/scene/reconstruction_io``):
``cameras.bin``: uint64 count, then per camera int32 camera_id, int32 model_id, uint64 width,
uint64 height, float64 params[n(model)].
``images.bin``: uint64 count, then per image int32 image_id, float64 qw qx qy qz tx ty tz,
int32 camera_id, the name as NUL-terminated bytes, uint64 num_points2D, then per point
float64 x, float64 y, int64 point3D_id.

Camera models kept: SIMPLE_PINHOLE (f cx cy), PINHOLE (fx fy cx cy), SIMPLE_RADIAL (f cx cy k),
RADIAL (f cx cy k1 k2), OPENCV (fx fy cx cy k1 k2 p1 p2); their distortion is recorded as
plumb_bob. Fisheye and the other models are refused by name.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pose_regressor.pose import inverse
from pose_regressor.rig import LensDistortion, PinholeIntrinsics
from pose_regressor_training.data.importers.common import (
    CameraTrack,
    FloatArray,
    ImportFormatError,
    PosedImage,
    check_distortion,
    check_finite,
    check_intrinsics,
    data_lines,
    find_path,
    parse_floats,
    read_text,
    unit_quaternion,
)
from pose_regressor_training.data.importers.one_camera import one_camera

# model id -> (name, number of parameters), as COLMAP numbers them
MODELS: dict[int, tuple[str, int]] = {
    0: ("SIMPLE_PINHOLE", 3),
    1: ("PINHOLE", 4),
    2: ("SIMPLE_RADIAL", 4),
    3: ("RADIAL", 5),
    4: ("OPENCV", 8),
    5: ("OPENCV_FISHEYE", 8),
    6: ("FULL_OPENCV", 12),
    7: ("FOV", 5),
    8: ("SIMPLE_RADIAL_FISHEYE", 4),
    9: ("RADIAL_FISHEYE", 5),
    10: ("THIN_PRISM_FISHEYE", 12),
    11: ("RAD_TAN_THIN_PRISM_FISHEYE", 16),
}
MODEL_IDS = {name: model_id for model_id, (name, _) in MODELS.items()}
SUPPORTED_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV")
MAX_RECORDS = 10_000_000  # cameras or images in one model
MAX_NAME_BYTES = 4096


@dataclass(frozen=True)
class ColmapCamera:
    camera_id: int
    model: str
    width: int
    height: int
    params: tuple[float, ...]
    where: str  # file:line or file, for messages


@dataclass(frozen=True)
class ColmapImage:
    image_id: int
    q_wxyz: tuple[float, float, float, float]  # T_cam_world
    t: tuple[float, float, float]
    camera_id: int
    name: str
    where: str


def _model_kind(folder: Path) -> bool | None:
    """True for a binary model folder, False for a text one, None when `folder` holds neither."""
    if (folder / "cameras.bin").is_file() and (folder / "images.bin").is_file():
        return True
    if (folder / "cameras.txt").is_file() and (folder / "images.txt").is_file():
        return False
    return None


@dataclass(frozen=True)
class ModelChoice:
    """The model folder to import, and the numbered models beside it that were passed over."""

    folder: Path
    binary: bool
    passed_over: tuple[tuple[str, int], ...] = ()  # (name, registered images), by number


def find_model(path: Path) -> ModelChoice:
    """The model of a model folder, or of a project or ``sparse`` folder holding ``sparse/N``.

    COLMAP's mapper writes one model per connected part of the scene, numbered in the order it
    started them, so the largest is not always ``sparse/0`` (a 5-image fragment can come first).
    Of several, the one with the most registered images is taken; `read_colmap` says which.
    """
    for folder in (path, path / "sparse"):
        binary = _model_kind(folder)
        if binary is not None:
            return ModelChoice(folder, binary)
    numbered = sorted(
        (
            folder
            for parent in (path / "sparse", path)
            for folder in parent.glob("*")
            if folder.name.isdigit() and folder.is_dir()
        ),
        key=lambda folder: int(folder.name),
    )
    models = [(folder, binary) for folder in numbered if (binary := _model_kind(folder)) is not None]
    if models:
        counts = [_registered_images(folder, binary) for folder, binary in models]
        best = counts.index(max(counts))  # the first of equals
        passed_over = tuple((folder.name, counts[k]) for k, (folder, _) in enumerate(models) if k != best)
        return ModelChoice(models[best][0], models[best][1], passed_over)
    if not path.exists():
        raise ImportFormatError(f"COLMAP model {path} does not exist")
    raise ImportFormatError(
        f"{path} is not a COLMAP sparse model: no cameras.bin + images.bin or cameras.txt + images.txt "
        "(looked in it, in sparse, and in their numbered folders 0, 1, ...)"
    )


def _registered_images(folder: Path, binary: bool) -> int:
    if binary:
        return len(read_images_binary(folder / "images.bin"))
    return len(read_images_text(folder / "images.txt"))


def camera_intrinsics(camera: ColmapCamera) -> tuple[PinholeIntrinsics, LensDistortion | None]:
    """Pinhole intrinsics and plumb_bob distortion (None for the pinhole models) of a camera."""
    p = camera.params
    size = (camera.width, camera.height)
    if camera.model == "SIMPLE_PINHOLE":
        intr, dist = PinholeIntrinsics(*size, p[0], p[0], p[1], p[2]), None
    elif camera.model == "PINHOLE":
        intr, dist = PinholeIntrinsics(*size, p[0], p[1], p[2], p[3]), None
    elif camera.model == "SIMPLE_RADIAL":
        intr, dist = PinholeIntrinsics(*size, p[0], p[0], p[1], p[2]), LensDistortion(k1=p[3])
    elif camera.model == "RADIAL":
        intr, dist = PinholeIntrinsics(*size, p[0], p[0], p[1], p[2]), LensDistortion(k1=p[3], k2=p[4])
    elif camera.model == "OPENCV":
        intr = PinholeIntrinsics(*size, p[0], p[1], p[2], p[3])
        dist = LensDistortion(k1=p[4], k2=p[5], p1=p[6], p2=p[7])
    else:
        raise ImportFormatError(
            f"{camera.where}: camera {camera.camera_id} has model {camera.model}; supported: "
            f"{', '.join(SUPPORTED_MODELS)} (undistort with `colmap image_undistorter` for the others)"
        )
    return check_intrinsics(intr, camera.where), check_distortion(dist, camera.where)


def read_cameras_text(path: Path) -> dict[int, ColmapCamera]:
    cameras: dict[int, ColmapCamera] = {}
    for number, line in data_lines(path, read_text(path, "COLMAP cameras file")):
        where = f"{path}:{number}"
        tokens = line.split()
        if len(tokens) < 4:
            raise ImportFormatError(f"{where}: expected CAMERA_ID MODEL WIDTH HEIGHT PARAMS..., got {line!r}")
        model = tokens[1]
        if model not in MODEL_IDS:
            raise ImportFormatError(f"{where}: unknown camera model {model!r}")
        try:
            camera_id, width, height = int(tokens[0]), int(tokens[2]), int(tokens[3])
        except ValueError:
            raise ImportFormatError(f"{where}: CAMERA_ID, WIDTH and HEIGHT must be integers") from None
        params = parse_floats(tokens[4:], where, "camera parameters")
        expected = MODELS[MODEL_IDS[model]][1]
        if len(params) != expected:
            raise ImportFormatError(f"{where}: {model} has {expected} parameters, got {len(params)}")
        _check_new_camera(cameras, camera_id, where)
        cameras[camera_id] = ColmapCamera(camera_id, model, width, height, tuple(params), where)
    return cameras


def read_images_text(path: Path) -> list[ColmapImage]:
    """Two lines per image: the pose line and the 2-D points line (which may be empty)."""
    lines = read_text(path, "COLMAP images file").splitlines()
    images: list[ColmapImage] = []
    number = 0
    while number < len(lines):
        line = lines[number].strip()
        number += 1
        if not line or line.startswith("#"):
            continue
        where = f"{path}:{number}"
        tokens = line.split(maxsplit=9)
        if len(tokens) < 10:
            raise ImportFormatError(
                f"{where}: expected IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME, got {line[:80]!r}"
            )
        try:
            image_id, camera_id = int(tokens[0]), int(tokens[8])
        except ValueError:
            raise ImportFormatError(f"{where}: IMAGE_ID and CAMERA_ID must be integers") from None
        q = parse_floats(tokens[1:5], where, "QW QX QY QZ")
        t = parse_floats(tokens[5:8], where, "TX TY TZ")
        images.append(
            ColmapImage(image_id, (q[0], q[1], q[2], q[3]), (t[0], t[1], t[2]), camera_id, tokens[9], where)
        )
        if number < len(lines) and _is_image_line(lines[number]):
            # Hand-written files leave out the POINTS2D lines; skipping the line anyway would drop
            # every other image without a word.
            raise ImportFormatError(
                f"{path}:{number + 1}: expected the POINTS2D line of image {tokens[9]!r} (it may be "
                "empty), found another image line; COLMAP writes two lines per image"
            )
        number += 1  # the POINTS2D line that belongs to this image
    return images


def _is_image_line(line: str) -> bool:
    """IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME, not a POINTS2D line (X Y POINT3D_ID triples)."""
    tokens = line.split(maxsplit=9)
    if len(tokens) < 10 or not (_is_integer(tokens[0]) and _is_integer(tokens[8])):
        return False
    if not all(_is_number(t) for t in tokens[1:8]):
        return False
    points = line.split()
    return len(points) % 3 != 0 or not all(_is_number(t) for t in points)


def _is_integer(token: str) -> bool:
    try:
        int(token)
    except ValueError:
        return False
    return True


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


class _Binary:
    """A cursor over a binary COLMAP file; a short read is one error naming the file and offset."""

    def __init__(self, path: Path, what: str) -> None:
        if not path.is_file():
            raise ImportFormatError(f"{what} {path} does not exist")
        try:
            self.data = path.read_bytes()
        except OSError as exc:
            raise ImportFormatError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
        self.path = path
        self.offset = 0

    def take(self, fmt: str) -> tuple[int | float, ...]:
        size = struct.calcsize("<" + fmt)
        if self.offset + size > len(self.data):
            raise ImportFormatError(f"{self.path} is truncated (needs {size} bytes at byte {self.offset})")
        values = struct.unpack_from("<" + fmt, self.data, self.offset)
        self.offset += size
        return values

    def name(self) -> str:
        start = self.offset
        end = self.data.find(b"\0", start, start + MAX_NAME_BYTES)
        if end < 0:
            raise ImportFormatError(f"{self.path}: no NUL-terminated image name at byte {start}")
        self.offset = end + 1
        try:
            return self.data[start:end].decode("utf-8")
        except UnicodeDecodeError:
            raise ImportFormatError(f"{self.path}: image name at byte {start} is not UTF-8") from None

    def count(self) -> int:
        (count,) = self.take("Q")
        if count > MAX_RECORDS:
            raise ImportFormatError(f"{self.path} claims {count} records; at most {MAX_RECORDS}")
        return int(count)


def read_cameras_binary(path: Path) -> dict[int, ColmapCamera]:
    reader = _Binary(path, "COLMAP cameras file")
    cameras: dict[int, ColmapCamera] = {}
    for _ in range(reader.count()):
        where = f"{path} (byte {reader.offset})"
        camera_id, model_id, width, height = (int(v) for v in reader.take("iiQQ"))
        if model_id not in MODELS:
            raise ImportFormatError(f"{where}: unknown camera model id {model_id}")
        model, n_params = MODELS[model_id]
        params = tuple(
            check_finite([float(v) for v in reader.take("d" * n_params)], where, "camera parameters")
        )
        _check_new_camera(cameras, camera_id, where)
        cameras[camera_id] = ColmapCamera(camera_id, model, width, height, params, where)
    return cameras


def _check_new_camera(cameras: dict[int, ColmapCamera], camera_id: int, where: str) -> None:
    """A camera id defined twice leaves its images' intrinsics to whichever came last."""
    if camera_id in cameras:
        raise ImportFormatError(
            f"{where}: camera {camera_id} is defined again (first at {cameras[camera_id].where}); "
            "a cameras file defines each id once"
        )


def read_images_binary(path: Path) -> list[ColmapImage]:
    reader = _Binary(path, "COLMAP images file")
    images: list[ColmapImage] = []
    for _ in range(reader.count()):
        where = f"{path} (byte {reader.offset})"
        image_id, qw, qx, qy, qz, tx, ty, tz, camera_id = reader.take("idddddddi")
        # the text reader's checks and words: a nan reaching the pose arithmetic fails there
        # without the file's name
        check_finite([float(qw), float(qx), float(qy), float(qz)], where, "QW QX QY QZ")
        check_finite([float(tx), float(ty), float(tz)], where, "TX TY TZ")
        name = reader.name()
        points = reader.count()
        reader.offset += points * struct.calcsize("<ddq")
        if reader.offset > len(reader.data):  # the 2-D points are skipped, not parsed
            raise ImportFormatError(f"{path} is truncated (in the 2-D points of image {name!r})")
        images.append(
            ColmapImage(
                int(image_id),
                (float(qw), float(qx), float(qy), float(qz)),
                (float(tx), float(ty), float(tz)),
                int(camera_id),
                name,
                where,
            )
        )
    return images


def find_images_folder(model: Path, images: Path | None) -> Path:
    """`images` if given, else the first ``images`` folder in, above or two above the model."""
    if images is not None:
        images = find_path(images) or images  # typed composed, stored decomposed (or the reverse)
        if not images.is_dir():
            problem = "is not a folder" if images.exists() else "does not exist"
            raise ImportFormatError(f"image folder {images} {problem}")
        return images
    candidates = [model / "images", model.parent / "images", model.parent.parent / "images"]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise ImportFormatError(f"no image folder found (tried {tried}); give it with --images")


def read_colmap(path: Path, images: Path | None = None, camera_id: int | None = None) -> CameraTrack:
    """The registered images of a COLMAP model with their camera poses ``T_map_cam`` (map = COLMAP's world).

    All images must share one camera (run COLMAP with ``--ImageReader.single_camera 1``), or pick one
    with `camera_id`; per-image cameras that are estimates of one lens are merged (`one_camera`).
    """
    choice = find_model(path)
    model, binary = choice.folder, choice.binary
    if binary:
        cameras = read_cameras_binary(model / "cameras.bin")
        posed = read_images_binary(model / "images.bin")
    else:
        cameras = read_cameras_text(model / "cameras.txt")
        posed = read_images_text(model / "images.txt")
    image_dir = find_images_folder(model, images)
    for image in posed:
        if image.camera_id not in cameras:
            raise ImportFormatError(
                f"{image.where}: image {image.name!r} uses camera {image.camera_id}, "
                "which the cameras file does not list"
            )
    registered = len(posed)
    if camera_id is not None:
        if camera_id not in cameras:
            raise ImportFormatError(
                f"--camera-id {camera_id} is not in the model (cameras: "
                f"{', '.join(str(c) for c in sorted(cameras))})"
            )
        posed = [image for image in posed if image.camera_id == camera_id]
    used = sorted({image.camera_id for image in posed})
    if not used:
        raise ImportFormatError(f"COLMAP model {model} has no registered image")
    lenses = {c: camera_intrinsics(cameras[c]) for c in used}
    (intrinsics, distortion), merged = one_camera(
        [lenses[image.camera_id] for image in posed],
        str(model),
        f"a mono rig has one (ids {', '.join(map(str, used[:10]))}): pick one with --camera-id or "
        "reconstruct with --ImageReader.single_camera 1",
    )
    kind = "binary" if binary else "text"
    notes: tuple[str, ...] = ()
    if choice.passed_over:
        listed = ", ".join(f"{name} ({count} images)" for name, count in choice.passed_over)
        notes = (
            f"{model.parent} holds {len(choice.passed_over) + 1} models; imported {model.name}, the largest "
            f"({registered} images), not {listed}: give a model folder to take another",
        )
    if merged is not None:
        notes = (*notes, merged)
    return CameraTrack(
        intrinsics=intrinsics,
        distortion=distortion,
        images=[_posed_image(image, image_dir) for image in posed],
        source=f"COLMAP {kind} model {model} (images in {image_dir})",
        format="colmap",
        notes=notes,
        inputs=(
            model / f"cameras.{'bin' if binary else 'txt'}",
            model / f"images.{'bin' if binary else 'txt'}",
        ),
    )


def _posed_image(image: ColmapImage, image_dir: Path) -> PosedImage:
    qw, qx, qy, qz = image.q_wxyz
    q_cam_world = unit_quaternion([qx, qy, qz, qw], image.where)
    t_map_cam, q_map_cam = inverse(np.array(image.t, dtype=float), q_cam_world)
    translation: FloatArray = np.asarray(t_map_cam, dtype=float)
    return PosedImage(image.name, image_dir / image.name, translation, np.asarray(q_map_cam, dtype=float))
