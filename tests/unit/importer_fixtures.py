"""Fixtures for the importer tests: a small synthetic mono dataset written out in other tools' formats.

The poses written are the synthetic camera's optical-frame poses ``T_map_cam`` (the rig camera
sits 0.1 m ahead of base_link, so they are not the base poses); each writer follows its format's
own conventions, independently of the importer code under test.
"""

from __future__ import annotations

import json
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pycolmap  # test-only (requirements/dev.txt): COLMAP's own reader and writer
from numpy.typing import NDArray

from pose_regressor.pose import compose, inverse, to_matrix
from pose_regressor.rig import PinholeIntrinsics, preset_rig
from pose_regressor_training.data.folder import image_path, read_frames, read_rig
from pose_regressor_training.synth.generate import SynthConfig, render_dataset

FloatArray = NDArray[np.float64]
WIDTH, HEIGHT, FRAMES = 64, 48, 12


@dataclass(frozen=True)
class SynthCameraPoses:
    """Rendered images and their camera poses, in time order."""

    images: list[Path]
    translations: FloatArray  # (N, 3) T_map_cam
    quats_xyzw: FloatArray  # (N, 4) T_map_cam, w >= 0
    stamps_ns: list[int]
    intrinsics: PinholeIntrinsics


def render_synth(
    root: Path, frames: int = FRAMES, width: int = WIDTH, height: int = HEIGHT
) -> SynthCameraPoses:
    """`pose-train synth --rig mono --frames 12 --width 64 --height 48`, as camera poses."""
    out = root / "synth"
    rig = preset_rig("mono", width, height)
    per_trajectory = max(1, frames // 3)
    cfg = SynthConfig(
        out=out, rig=rig, frames=frames, frames_per_trajectory=per_trajectory, workers=1, progress=False
    )
    render_dataset(cfg)
    camera = read_rig(out).cameras[0]
    records = sorted(read_frames(out), key=lambda f: f.stamp_ns)
    t_cam, q_cam = compose(
        np.stack([f.translation for f in records]),
        np.stack([f.quat_xyzw for f in records]),
        camera.translation,
        camera.rotation_xyzw,
    )
    return SynthCameraPoses(
        images=[image_path(out, camera.name, f.index) for f in records],
        translations=t_cam,
        quats_xyzw=q_cam,
        stamps_ns=[f.stamp_ns for f in records],
        intrinsics=camera.intrinsics,
    )


def image_names(count: int) -> list[str]:
    return [f"frame_{i:03d}.png" for i in range(count)]


def copy_images(synth: SynthCameraPoses, folder: Path, names: list[str], jpeg: bool = False) -> None:
    for source, name in zip(synth.images, names, strict=True):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        if jpeg:
            cv2.imwrite(str(folder / name), cv2.imread(str(source)), [cv2.IMWRITE_JPEG_QUALITY, 95])
        else:
            shutil.copy(source, folder / name)


def _colmap_poses(synth: SynthCameraPoses) -> tuple[FloatArray, FloatArray]:
    """World-to-camera (t, q xyzw), as COLMAP stores them."""
    return inverse(synth.translations, synth.quats_xyzw)


COLMAP_OPENCV_PARAMS = (33.5, 31.25, 31.7, 24.2, -0.021, 0.003, 0.0004, -0.0002)


def write_colmap_text(synth: SynthCameraPoses, project: Path, model: str = "PINHOLE") -> Path:
    """project/sparse/0/{cameras,images,points3D}.txt and project/images/; images listed out of order."""
    intr = synth.intrinsics
    params = {
        "PINHOLE": (intr.fx, intr.fy, intr.cx, intr.cy),
        "SIMPLE_PINHOLE": (intr.fx, intr.cx, intr.cy),
        "OPENCV": COLMAP_OPENCV_PARAMS,
    }[model]
    sparse = project / "sparse" / "0"
    sparse.mkdir(parents=True)
    names = image_names(len(synth.images))
    copy_images(synth, project / "images", names)
    (sparse / "cameras.txt").write_text(
        "# Camera list with one line of data per camera:\n#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n"
        f"7 {model} {intr.width} {intr.height} {' '.join(repr(p) for p in params)}\n"
    )
    t, q = _colmap_poses(synth)
    lines = [
        "# Image list with two lines of data per image:",
        "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, ...",
    ]
    for k in reversed(range(len(names))):
        qx, qy, qz, qw = q[k]
        pose = " ".join(repr(float(v)) for v in (qw, qx, qy, qz, *t[k]))
        lines.append(f"{100 + k} {pose} 7 {names[k]}")
        lines.append("" if k % 2 else "12.5 7.25 -1 30.0 20.0 4")  # 2-D points, sometimes none
    (sparse / "images.txt").write_text("\n".join(lines) + "\n")
    (sparse / "points3D.txt").write_text("")
    return sparse


def write_colmap_binary(synth: SynthCameraPoses, project: Path) -> Path:
    """project/sparse/0/{cameras,images}.bin (PINHOLE) and project/images/."""
    intr = synth.intrinsics
    sparse = project / "sparse" / "0"
    sparse.mkdir(parents=True)
    names = image_names(len(synth.images))
    copy_images(synth, project / "images", names)
    cameras = struct.pack("<Q", 1) + struct.pack("<iiQQ", 3, 1, intr.width, intr.height)
    cameras += struct.pack("<4d", intr.fx, intr.fy, intr.cx, intr.cy)
    (sparse / "cameras.bin").write_bytes(cameras)
    t, q = _colmap_poses(synth)
    images = struct.pack("<Q", len(names))
    for k in reversed(range(len(names))):
        qx, qy, qz, qw = q[k]
        images += struct.pack("<idddddddi", 40 + k, qw, qx, qy, qz, *t[k], 3)
        images += names[k].encode() + b"\0"
        points = k % 3
        images += struct.pack("<Q", points) + struct.pack("<ddq", 1.5, 2.5, -1) * points
    (sparse / "images.bin").write_bytes(images)
    return sparse


def pinhole_camera(intr: PinholeIntrinsics, camera_id: int = 1) -> pycolmap.Camera:
    """COLMAP's own PINHOLE camera of `intr`."""
    params = [intr.fx, intr.fy, intr.cx, intr.cy]
    return pycolmap.Camera(
        camera_id=camera_id, model="PINHOLE", width=intr.width, height=intr.height, params=params
    )


def write_colmap_by_colmap(
    synth: SynthCameraPoses, project: Path, binary: bool, unregistered: int, second_camera_images: int
) -> Path:
    """The same poses written by COLMAP's own library (pycolmap 4, with its rigs and frames files).

    Image ``unregistered`` is in the model but deregistered (COLMAP leaves it out of images.*);
    a second camera (id 2, SIMPLE_RADIAL, a trivial rig) holds ``second_camera_images`` more
    images that share the first ones' poses, so ``--camera-id`` has something to tell apart.
    """
    intr = synth.intrinsics
    sparse = project / "sparse" / "0"
    sparse.mkdir(parents=True)
    names = image_names(len(synth.images))
    copy_images(synth, project / "images", names)
    model = pycolmap.Reconstruction()
    model.add_camera_with_trivial_rig(pinhole_camera(intr))
    model.add_camera_with_trivial_rig(
        pycolmap.Camera(
            camera_id=2, model="SIMPLE_RADIAL", width=2 * intr.width, height=2 * intr.height,
            params=[2 * intr.fx, 2 * intr.cx, 2 * intr.cy, 0.01],
        )
    )  # fmt: skip
    t, q = _colmap_poses(synth)

    def add(image_id: int, camera_id: int, name: str, k: int) -> None:
        cam_from_world = pycolmap.Rigid3d(pycolmap.Rotation3d(q[k]), t[k])
        image = pycolmap.Image(name=name, camera_id=camera_id, image_id=image_id)
        model.add_image_with_trivial_frame(image, cam_from_world)

    for k in reversed(range(len(names))):
        add(100 + k, 1, names[k], k)
    for k in range(second_camera_images):
        add(500 + k, 2, f"other/{names[k]}", k)
    model.deregister_frame(100 + unregistered)
    (model.write_binary if binary else model.write_text)(str(sparse))
    return sparse


GL_FROM_OPTICAL = np.diag([1.0, -1.0, -1.0, 1.0])


def write_transforms(synth: SynthCameraPoses, folder: Path, per_frame_intrinsics: bool = False) -> Path:
    """folder/transforms.json (camera-to-world, OpenGL axes) with JPEG images named without extension."""
    intr = synth.intrinsics
    names = [f"frame_{i:03d}.jpg" for i in range(len(synth.images))]
    copy_images(synth, folder / "images", names, jpeg=True)
    camera = {
        "fl_x": intr.fx,
        "fl_y": intr.fy,
        "cx": intr.cx,
        "cy": intr.cy,
        "w": intr.width,
        "h": intr.height,
    }
    frames = []
    for k in reversed(range(len(names))):  # out of order: the importer orders by name
        matrix = to_matrix(synth.translations[k], synth.quats_xyzw[k]) @ GL_FROM_OPTICAL
        frame: dict[str, object] = {"file_path": f"images/frame_{k:03d}", "transform_matrix": matrix.tolist()}
        if per_frame_intrinsics:
            frame.update(camera)
        frames.append(frame)
    data = {"camera_model": "OPENCV", **({} if per_frame_intrinsics else camera), "frames": frames}
    path = folder / "transforms.json"
    path.write_text(json.dumps(data, indent=1))
    return path


def write_tum(synth: SynthCameraPoses, folder: Path) -> Path:
    """folder/{groundtruth,rgb}.txt and folder/rgb/; images at the ground truth's stamps (so their
    poses are exact), plus one extra image with no ground truth near it."""
    names = [f"rgb/{stamp / 1e9:.6f}.png" for stamp in synth.stamps_ns]
    copy_images(synth, folder, names)
    gt = ["# ground truth trajectory", "# timestamp tx ty tz qx qy qz qw"]
    for stamp, t, q in zip(synth.stamps_ns, synth.translations, synth.quats_xyzw, strict=True):
        gt.append(f"{stamp / 1e9:.6f} " + " ".join(repr(float(v)) for v in (*t, *q)))
    rgb = ["# color images", "# timestamp filename"]
    rgb += [f"{stamp / 1e9:.6f} {name}" for stamp, name in zip(synth.stamps_ns, names, strict=True)]
    late = synth.stamps_ns[-1] + 10_000_000_000
    shutil.copy(synth.images[0], folder / "rgb" / "late.png")
    rgb.append(f"{late / 1e9:.6f} rgb/late.png")
    (folder / "groundtruth.txt").write_text("\n".join(gt) + "\n")
    (folder / "rgb.txt").write_text("\n".join(rgb) + "\n")
    return folder


def imported_camera_poses(out: Path) -> tuple[FloatArray, FloatArray, list[str], PinholeIntrinsics]:
    """An imported folder's camera poses T_map_base · T_base_cam (index order), splits, intrinsics."""
    frames = sorted(read_frames(out), key=lambda f: f.index)
    camera = read_rig(out).cameras[0]
    t, q = compose(
        np.stack([f.translation for f in frames]),
        np.stack([f.quat_xyzw for f in frames]),
        camera.translation,
        camera.rotation_xyzw,
    )
    return t, q, [f.split for f in frames], camera.intrinsics
