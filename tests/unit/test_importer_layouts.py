"""`pose-train import` on the layouts that real tools and published sets write: nerfstudio's
ns-process-data, the NeRF synthetic (Blender) scenes, instant-ngp's colmap2nerf, files saved on
Windows, the TUM RGB-D Freiburg sequences, COLMAP models of oddly named images, and image files
other than 8-bit colour. Each fixture follows its tool's own code or documented format; the camera
poses imported are compared with the rendered ones, moved into the tool's world where it moves them.
"""

from __future__ import annotations

import json
import math
import shutil
import unicodedata
from decimal import Decimal
from pathlib import Path

import cv2
import numpy as np
import pycolmap
import pytest
import yaml

from pose_regressor.pose import canonical_hemisphere, from_matrix, inverse, to_matrix
from pose_regressor_training.cli import main
from pose_regressor_training.data.folder import load_folder
from pose_regressor_training.data.importers.common import PosedImage
from pose_regressor_training.data.importers.writer import ordered
from tests.unit.importer_fixtures import (
    GL_FROM_OPTICAL,
    SynthCameraPoses,
    copy_images,
    imported_camera_poses,
    pinhole_camera,
    write_colmap_text,
    write_transforms,
    write_tum,
)

ATOL = 1e-9


def _import(*args: str | Path | float) -> int:
    return main(["import", *(str(a) for a in args), "--quiet"])


def _error(capsys: pytest.CaptureFixture[str], *args: str | Path | float) -> str:
    """The one line of an import that fails with exit code 2."""
    capsys.readouterr()
    assert _import(*args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("pose-train import: error: "), err
    return err


def _assert_poses(out: Path, t: np.ndarray, q: np.ndarray, atol: float = ATOL) -> None:
    got_t, got_q, _, _ = imported_camera_poses(out)
    np.testing.assert_allclose(got_t, t, rtol=0, atol=atol)
    np.testing.assert_allclose(canonical_hemisphere(got_q), canonical_hemisphere(q), rtol=0, atol=atol)


def _assert_images(out: Path, expected: list[np.ndarray]) -> None:
    for index, image in enumerate(expected):
        written = cv2.imread(str(out / "images" / "camera" / f"{index:06d}.png"), cv2.IMREAD_UNCHANGED)
        assert written is not None and np.array_equal(written, image), index


def _distortion(out: Path) -> dict[str, float] | None:
    return yaml.safe_load((out / "dataset.yaml").read_text())["rig"]["cameras"][0].get("distortion")


def _in_world(
    synth: SynthCameraPoses, rotation: np.ndarray, offset: np.ndarray, scale: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The camera poses in a world where x' = scale * (rotation @ x - offset): (4 x 4 matrices, t, q)."""
    world = np.eye(4)
    world[:3, :3] = rotation
    matrices = world @ to_matrix(synth.translations, synth.quats_xyzw)
    matrices[:, :3, 3] = scale * (matrices[:, :3, 3] - offset)
    t, q = from_matrix(matrices)
    return matrices, t, q


def _intrinsic_keys(synth: SynthCameraPoses) -> dict[str, float]:
    intr = synth.intrinsics
    return {"fl_x": intr.fx, "fl_y": intr.fy, "cx": intr.cx, "cy": intr.cy, "w": intr.width, "h": intr.height}


# nerfstudio's colmap_to_json: rows 1 and 2 swapped and row 2 negated (its `applied_transform`)
NERFSTUDIO_APPLIED = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


@pytest.mark.parametrize("one_camera", [True, False])
def test_nerfstudio_ns_process_data_layout(tmp_path: Path, synth: SynthCameraPoses, one_camera: bool) -> None:
    """What `ns-process-data images` writes (nerfstudio/process_data/colmap_utils.py, colmap_to_json):
    camera_model OPENCV and k1 k2 p1 p2 at the top level (per frame, with no top level, when COLMAP
    found several cameras), frames in COLMAP's image order with colmap_im_id, mask_path and
    depth_file_path, applied_transform, ply_file_path, and downscaled copies in images_2, images_4."""
    folder = tmp_path / "ns"
    names = [f"frame_{k + 1:05d}.png" for k in range(len(synth.images))]
    copy_images(synth, folder / "images", names)
    for factor in (2, 4):
        (folder / f"images_{factor}").mkdir()
        for name in names:
            image = cv2.imread(str(folder / "images" / name))
            small = cv2.resize(image, (synth.intrinsics.width // factor, synth.intrinsics.height // factor))
            cv2.imwrite(str(folder / f"images_{factor}" / name), small)
    (folder / "sparse_pc.ply").write_text("ply\nformat ascii 1.0\nelement vertex 0\nend_header\n")
    matrices, t, q = _in_world(synth, NERFSTUDIO_APPLIED, np.zeros(3), 1.0)
    camera = {**_intrinsic_keys(synth), "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0, "camera_model": "OPENCV"}
    frames = []
    for image_id, k in enumerate([5, 2, 9, 0, 11, 7, 1, 4, 10, 3, 8, 6], start=1):
        frame = {
            "file_path": f"images/{names[k]}",
            "transform_matrix": (matrices[k] @ GL_FROM_OPTICAL).tolist(),
            "colmap_im_id": image_id,
            "mask_path": f"masks/{names[k]}",
            "depth_file_path": f"depths/{names[k]}",
        }
        frames.append(frame if one_camera else {**frame, **camera})
    top = camera if one_camera else {}
    applied = np.hstack([NERFSTUDIO_APPLIED, np.zeros((3, 1))]).tolist()
    data = {**top, "frames": frames, "applied_transform": applied, "ply_file_path": "sparse_pc.ply"}
    (folder / "transforms.json").write_text(json.dumps(data, indent=4))
    out = tmp_path / "data"
    assert _import("nerfstudio", folder, "--out", out) == 0
    _assert_poses(out, t, q)
    assert imported_camera_poses(out)[3] == synth.intrinsics
    assert _distortion(out) == {"model": "plumb_bob", "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0, "k3": 0.0}
    _assert_images(out, [cv2.imread(str(path)) for path in synth.images])


def _blender_scene(synth: SynthCameraPoses, folder: Path) -> Path:
    """A NeRF synthetic scene: transforms_train.json with camera_angle_x only and frames
    {"file_path": "./train/r_K", "rotation": ..., "transform_matrix": ...}; RGBA PNGs, transparent
    (here with colour 0) around the object; the test split's depth maps beside them."""
    (folder / "train").mkdir(parents=True)
    intr = synth.intrinsics
    frames = []
    for k, source in enumerate(synth.images):
        bgr = cv2.imread(str(source))
        alpha = np.full(bgr.shape[:2], 255, np.uint8)
        alpha[:5] = 0
        bgra = np.dstack([bgr, alpha])
        bgra[alpha == 0] = 0
        cv2.imwrite(str(folder / "train" / f"r_{k}.png"), bgra)
        cv2.imwrite(str(folder / "train" / f"r_{k}_depth_0000.png"), alpha)
        matrix = to_matrix(synth.translations[k], synth.quats_xyzw[k]) @ GL_FROM_OPTICAL
        frames.append(
            {
                "file_path": f"./train/r_{k}",
                "rotation": 0.012566370614359171,
                "transform_matrix": matrix.tolist(),
            }
        )
    angle = 2 * math.atan(0.5 * intr.width / intr.fx)
    path = folder / "transforms_train.json"
    path.write_text(json.dumps({"camera_angle_x": angle, "frames": frames}, indent=4))
    return path


def test_nerf_synthetic_blender_scene(
    tmp_path: Path, synth: SynthCameraPoses, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _blender_scene(synth, tmp_path / "lego")
    out = tmp_path / "data"
    capsys.readouterr()
    assert _import("nerfstudio", path, "--out", out) == 0
    printed = capsys.readouterr().out
    assert "  images have an alpha channel: it is dropped, and transparent pixels keep" in printed
    _assert_poses(out, synth.translations, synth.quats_xyzw)
    intr = imported_camera_poses(out)[3]
    assert (intr.width, intr.height, intr.cx, intr.cy) == (64, 48, 32.0, 24.0)
    assert intr.fx == pytest.approx(synth.intrinsics.fx, rel=1e-12) and intr.fy == intr.fx
    # the alpha channel is dropped: the colour under it, as stored, is what is written
    train = tmp_path / "lego" / "train"
    _assert_images(out, [cv2.imread(str(train / f"r_{k}.png")) for k in range(len(synth.images))])

    # the folder, which has no transforms.json: was "transforms file .../transforms.json does not exist"
    assert _error(capsys, "nerfstudio", tmp_path / "lego", "--out", tmp_path / "x").endswith(
        f"transforms file {tmp_path / 'lego' / 'transforms.json'} does not exist (the folder holds "
        "transforms_train.json: give one of them)\n"
    )
    # --skip-missing without the first frame's image: the size (no w and h) came from that image and
    # the import was refused ("frames[0]: no w and h, and image .../train/r_0 cannot be read")
    (tmp_path / "lego" / "train" / "r_0.png").unlink()
    shutil.rmtree(out)
    assert _import("nerfstudio", path, "--out", out, "--skip-missing") == 0
    _assert_poses(out, synth.translations[1:], synth.quats_xyzw[1:])
    assert imported_camera_poses(out)[3].width == 64
    for image in (tmp_path / "lego" / "train").glob("r_*.png"):
        image.unlink()
    assert _error(capsys, "nerfstudio", path, "--out", tmp_path / "y", "--skip-missing").endswith(
        f"{path}: frames[0]: no w and h, and none of the 12 images named exists\n"
    )


def _colmap2nerf(
    synth: SynthCameraPoses, folder: Path, **camera: object
) -> tuple[Path, np.ndarray, np.ndarray]:
    """instant-ngp's scripts/colmap2nerf.py output: camera_angle_x/y, fl_x..p2 with k3, k4 and
    is_fisheye, w and h as floats, aabb_scale, and frames {"file_path": "./images/0001.jpg",
    "sharpness", "transform_matrix"}, the world turned up, centred and scaled to 'nerf size'; here
    also instant-ngp's scale and offset keys."""
    names = [f"{k + 1:04d}.jpg" for k in range(len(synth.images))]
    copy_images(synth, folder / "images", names, jpeg=True)
    intr = synth.intrinsics
    up = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]) @ np.array(
        [[1.0, 0.0, 0.0], [0.0, 0.6, -0.8], [0.0, 0.8, 0.6]]
    )
    matrices, t, q = _in_world(synth, up, np.array([0.3, -1.2, 0.7]), 4.0 / 2.7)
    angle_x, angle_y = (
        2 * math.atan(0.5 * size / f) for size, f in ((intr.width, intr.fx), (intr.height, intr.fy))
    )
    keys = {
        "camera_angle_x": angle_x,
        "camera_angle_y": angle_y,
        **_intrinsic_keys(synth),
        "w": float(intr.width),
        "h": float(intr.height),
        **{k: 0 for k in ("k1", "k2", "k3", "k4", "p1", "p2")},
        "is_fisheye": False,
        **camera,
    }
    frames = [
        {
            "file_path": f"./images/{name}",
            "sharpness": 180.5 + k,
            "transform_matrix": (m @ GL_FROM_OPTICAL).tolist(),
        }
        for k, (name, m) in enumerate(zip(names, matrices, strict=True))
    ]
    path = folder / "transforms.json"
    data = {**keys, "aabb_scale": 16, "scale": 0.33, "offset": [0.5, 0.5, 0.5], "frames": frames}
    path.write_text(json.dumps(data, indent=2))
    return path, t, q


def test_instant_ngp_colmap2nerf_layout(tmp_path: Path, synth: SynthCameraPoses) -> None:
    path, t, q = _colmap2nerf(synth, tmp_path / "ngp")
    out = tmp_path / "data"
    assert _import("nerfstudio", path, "--out", out) == 0
    _assert_poses(out, t, q)
    assert imported_camera_poses(out)[3] == synth.intrinsics
    # several cameras: each frame carries its camera, with fovx and fovy in degrees beside the angles
    data = json.loads(path.read_text())
    camera = {k: data.pop(k) for k in list(data) if k not in ("frames", "aabb_scale", "scale", "offset")}
    camera.update(fovx=math.degrees(camera["camera_angle_x"]), fovy=math.degrees(camera["camera_angle_y"]))
    frames = data["frames"]
    data["frames"] = [{**frame, **camera} for frame in frames]
    path.write_text(json.dumps(data))
    assert _import("nerfstudio", path, "--out", tmp_path / "several") == 0
    _assert_poses(tmp_path / "several", t, q)
    # absolute paths
    data["frames"] = [{**f, "file_path": str((path.parent / f["file_path"]).resolve())} for f in frames]
    path.write_text(json.dumps({**camera, "frames": data["frames"]}))
    assert _import("nerfstudio", path, "--out", tmp_path / "absolute") == 0
    _assert_poses(tmp_path / "absolute", t, q)


def test_a_file_path_written_on_windows_is_found(tmp_path: Path, synth: SynthCameraPoses) -> None:
    """colmap2nerf run on Windows joins os.path.relpath(--images), backslashes and all, into
    file_path; on Linux every image 'did not exist'. So did "frame.jpg" for a file frame.JPG, one
    file on the case-blind disk it was written on."""
    path, t, q = _colmap2nerf(synth, tmp_path / "ngp")
    data = json.loads(path.read_text())
    for frame in data["frames"]:
        frame["file_path"] = frame["file_path"].replace("./images/", ".\\images\\")
    data["frames"][0]["file_path"] = data["frames"][0]["file_path"].removesuffix(".jpg")  # no extension
    path.write_text(json.dumps(data))
    out = tmp_path / "data"
    assert _import("nerfstudio", path, "--out", out) == 0
    _assert_poses(out, t, q)

    path = write_transforms(synth, tmp_path / "ns")
    data = json.loads(path.read_text())
    for frame in data["frames"]:
        frame["file_path"] += ".jpg"
    path.write_text(json.dumps(data))
    images = sorted((tmp_path / "ns" / "images").glob("*.jpg"))
    for image in images:
        image.rename(image.with_suffix(".JPG"))
    assert _import("nerfstudio", path, "--out", tmp_path / "upper") == 0
    _assert_poses(tmp_path / "upper", synth.translations, synth.quats_xyzw)
    _assert_images(tmp_path / "upper", [cv2.imread(str(image.with_suffix(".JPG"))) for image in images])


def test_instant_ngp_fisheye_is_refused(
    tmp_path: Path, synth: SynthCameraPoses, capsys: pytest.CaptureFixture[str]
) -> None:
    """colmap2nerf writes no camera_model; an OPENCV_FISHEYE camera is is_fisheye true with k1..k4.
    It was imported, its fisheye k1, k2 and k3 recorded as plumb_bob's."""
    fisheye = {"is_fisheye": True, "k1": 0.05, "k2": -0.01, "k3": 0.002, "k4": -0.0005}
    path, _, _ = _colmap2nerf(synth, tmp_path / "ngp", **fisheye)
    assert _error(capsys, "nerfstudio", path, "--out", tmp_path / "data").endswith(
        f"{path}: frames[0]: is_fisheye is true (k1..k4 are fisheye coefficients); fisheye cameras are "
        "not supported: undistort the images first (colmap image_undistorter)\n"
    )
    # written loosely, "true" or 1 was taken for false, and the fisheye coefficients as plumb_bob's
    for loose in ("true", 1):
        path, _, _ = _colmap2nerf(synth, tmp_path / f"ngp_{loose}", **{**fisheye, "is_fisheye": loose})
        assert _error(capsys, "nerfstudio", path, "--out", tmp_path / "data").endswith(
            f"{path}: frames[0]: is_fisheye must be true or false, got {loose!r}\n"
        )


@pytest.mark.parametrize(("model", "k2"), [("SIMPLE_RADIAL", 0.0), ("RADIAL", 0.001)])
def test_nerfstudio_radial_camera_models_are_perspective(
    tmp_path: Path, synth: SynthCameraPoses, model: str, k2: float
) -> None:
    """nerfstudio's CAMERA_MODEL_TO_TYPE reads SIMPLE_RADIAL and RADIAL as perspective cameras
    with k1 (k2); they were refused ("camera_model 'RADIAL' is not supported")."""
    path = write_transforms(synth, tmp_path / "ns")
    data = json.loads(path.read_text())
    data.update(camera_model=model, k1=0.01, k2=k2)
    path.write_text(json.dumps(data))
    out = tmp_path / "data"
    assert _import("nerfstudio", path, "--out", out) == 0
    _assert_poses(out, synth.translations, synth.quats_xyzw)
    assert _distortion(out) == {"model": "plumb_bob", "k1": 0.01, "k2": k2, "p1": 0.0, "p2": 0.0, "k3": 0.0}


def test_a_k4_is_left_out_of_the_distortion_with_a_note(
    tmp_path: Path, synth: SynthCameraPoses, capsys: pytest.CaptureFixture[str]
) -> None:
    """nerfstudio's Metashape converter writes OPENCV with k1..k4, p1, p2; nerfstudio reads k4 as
    an r^8 radial term. It was dropped without a word."""
    path = write_transforms(synth, tmp_path / "ns")
    data = json.loads(path.read_text())
    data.update(k1=-0.02, k2=0.01, k3=-0.003, k4=0.0007, p1=0.0001, p2=-0.0002)
    path.write_text(json.dumps(data))
    out = tmp_path / "data"
    capsys.readouterr()
    assert _import("nerfstudio", path, "--out", out) == 0
    note = (
        "k4 0.0007 (12 of 12 frames), an r^8 radial term plumb_bob has no place for, is left out of "
        "the recorded distortion"
    )
    assert note in capsys.readouterr().out
    assert note in yaml.safe_load((out / "dataset.yaml").read_text())["provenance"]["notes"]
    expected = {"model": "plumb_bob", "k1": -0.02, "k2": 0.01, "p1": 0.0001, "p2": -0.0002, "k3": -0.003}
    assert _distortion(out) == expected
    _assert_poses(out, synth.translations, synth.quats_xyzw)


def _as_windows_saves_it(path: Path) -> None:
    """UTF-8 with a byte-order mark (Notepad before 2019, Windows PowerShell's -Encoding utf8), CRLF
    line ends, trailing blanks."""
    lines = path.read_text(encoding="utf-8").split("\n")
    text = "\r\n".join(f"{line} \t" if line else line for line in lines)
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))


@pytest.mark.parametrize("fmt", ["nerfstudio", "colmap", "tum"])
def test_files_saved_on_windows(tmp_path: Path, synth: SynthCameraPoses, fmt: str) -> None:
    """The BOM made every format refuse the file: 'not valid JSON (Unexpected UTF-8 BOM)',
    'images.txt:1: IMAGE_ID and CAMERA_ID must be integers', "groundtruth.txt:1: expected
    'timestamp tx ty tz qx qy qz qw', got '\\ufeff# ground truth trajectory'"."""
    intr = synth.intrinsics
    extra: tuple[str | float, ...] = ()
    if fmt == "nerfstudio":
        source = write_transforms(synth, tmp_path / "ns")
        files = [source]
    elif fmt == "colmap":
        sparse = write_colmap_text(synth, tmp_path / "project")
        source, files = sparse, [sparse / "cameras.txt", sparse / "images.txt"]
    else:
        source = write_tum(synth, tmp_path / "tum")
        files = [source / "groundtruth.txt", source / "rgb.txt"]
        extra = ("--intrinsics", intr.fx, intr.fy, intr.cx, intr.cy)
    for path in files:
        _as_windows_saves_it(path)
    out = tmp_path / "data"
    assert _import(fmt, source, "--out", out, *extra) == 0
    _assert_poses(out, synth.translations, synth.quats_xyzw)
    assert imported_camera_poses(out)[3] == intr
    if (
        fmt == "colmap"
    ):  # a BOM before a data line, no comment header: 'CAMERA_ID, WIDTH and HEIGHT must be integers'
        camera = (files[0].read_text(encoding="utf-8-sig").splitlines()[2]).strip()
        files[0].write_bytes(b"\xef\xbb\xbf" + camera.encode() + b"\r\n")
        assert _import(fmt, source, "--out", tmp_path / "bare") == 0
        _assert_poses(tmp_path / "bare", synth.translations, synth.quats_xyzw)


def test_tum_freiburg_sequence_layout(tmp_path: Path, synth: SynthCameraPoses) -> None:
    """As rgbd_dataset_freiburg1_xyz ships: three '#' lines heading each file, motion capture at
    100 Hz from before the camera starts, stamps with 4 decimals and poses rounded to 4; images at
    about 30 Hz with 6-decimal stamps, named rgb/<stamp>.png. The motion is steady (constant
    velocity, constant turn rate about one axis), so the interpolated pose is exact up to the
    4-decimal rounding."""
    folder = tmp_path / "rgbd_dataset_freiburg1_xyz"
    (folder / "rgb").mkdir(parents=True)
    start = Decimal("1305031098.6659")
    q0 = np.array([0.6132, 0.5962, -0.3311, -0.3986]) / np.linalg.norm([0.6132, 0.5962, -0.3311, -0.3986])
    axis = np.array([0.2, 0.9, 0.1]) / np.linalg.norm([0.2, 0.9, 0.1])

    def pose(stamp: Decimal) -> tuple[np.ndarray, np.ndarray]:
        seconds = float(stamp - start)
        half = 0.15 * seconds  # 0.3 rad/s
        x, y, z = axis * math.sin(half)
        w = math.cos(half)
        a, b, c, d = q0
        turned = [w * a + x * d + y * c - z * b, w * b - x * c + y * d + z * a, w * c + x * b - y * a + z * d]
        return np.array([1.3563, 0.6305, 1.6380]) + seconds * np.array([0.05, -0.02, 0.01]), np.array(
            [*turned, w * d - x * a - y * b - z * c]
        )

    gt = [
        "# ground truth trajectory",
        "# file: 'rgbd_dataset_freiburg1_xyz.bag'",
        "# timestamp tx ty tz qx qy qz qw",
    ]
    for i in range(600):
        stamp = start + Decimal("0.01") * i
        t, q = pose(stamp)
        gt.append(f"{stamp:.4f} " + " ".join(f"{v:.4f}" for v in (*t, *q)))
    (folder / "groundtruth.txt").write_text("\n".join(gt) + "\n")
    rgb = ["# color images", "# file: 'rgbd_dataset_freiburg1_xyz.bag'", "# timestamp filename"]
    stamps = [
        Decimal("1305031102.175304") + Decimal("0.033178") * k + Decimal("0.000011") * (k % 3)
        for k in range(12)
    ]
    for source, stamp in zip(synth.images, stamps, strict=True):
        shutil.copy(source, folder / "rgb" / f"{stamp:.6f}.png")
        rgb.append(f"{stamp:.6f} rgb/{stamp:.6f}.png")
    (folder / "rgb.txt").write_text("\n".join(rgb) + "\n")
    out = tmp_path / "data"
    fr1 = (517.3 / 10, 516.5 / 10, 318.6 / 10, 255.3 / 10)  # at 64 x 48, a tenth of 640 x 480
    assert _import("tum", folder, "--out", out, "--intrinsics", *fr1) == 0
    expected = [pose(stamp) for stamp in stamps]
    _assert_poses(out, np.array([t for t, _ in expected]), np.array([q for _, q in expected]), atol=2e-4)
    assert [f.stamp_ns for f in load_folder(out).frames] == [int(s * 10**9) for s in stamps]
    _assert_images(out, [cv2.imread(str(p)) for p in synth.images])


@pytest.mark.parametrize("binary", [False, True])
def test_colmap_images_in_sub_folders_with_non_ascii_names_and_spaces(
    tmp_path: Path, synth: SynthCameraPoses, binary: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    """A model written by COLMAP's library (pycolmap): images.txt headed '# Number of images: 12,
    mean observations per image: 0', ending in an empty POINTS2D line, names in sub-folders, with
    non-ASCII letters and with spaces (COLMAP writes them whole; its own text reader stops at the
    space, ours takes the rest of the line)."""
    names = [
        "cam0/img001.png", "cam0/img002.png", "früh/straße_ü.png", "画像/写真 03.png", "my image 5.png",
        "cam0/ıİ.png", *(f"cam0/img{k:03d}.png" for k in range(7, 13)),
    ]  # fmt: skip
    project = tmp_path / "project"
    sparse = project / "sparse" / "0"
    sparse.mkdir(parents=True)
    copy_images(synth, project / "images", names)
    intr = synth.intrinsics
    model = pycolmap.Reconstruction()
    model.add_camera_with_trivial_rig(pinhole_camera(intr))
    t_cw, q_cw = inverse(synth.translations, synth.quats_xyzw)
    for k, name in enumerate(names):
        image = pycolmap.Image(name=name, camera_id=1, image_id=k + 1)
        model.add_image_with_trivial_frame(image, pycolmap.Rigid3d(pycolmap.Rotation3d(q_cw[k]), t_cw[k]))
    (model.write_binary if binary else model.write_text)(str(sparse))
    if not binary:
        text = (sparse / "images.txt").read_text()
        assert "# Number of images: 12, mean observations per image: 0\n" in text and text.endswith("\n\n")
        assert " 1 画像/写真 03.png\n" in text
    out = tmp_path / "data"
    assert _import("colmap", project, "--out", out, "--scale-from", "写真 03.png", "cam0/ıİ.png", "2") == 0
    # frames in name order: the poses and images of the names so ordered
    posed = [
        PosedImage(name, Path(name), synth.translations[k], synth.quats_xyzw[k])
        for k, name in enumerate(names)
    ]
    order = [names.index(image.name) for image in ordered(posed)]
    scale = 2 / float(np.linalg.norm(synth.translations[3] - synth.translations[5]))
    _assert_poses(out, synth.translations[order] * scale, synth.quats_xyzw[order])
    _assert_images(out, [cv2.imread(str(synth.images[k])) for k in order])


def _with_exif_orientation(path: Path, orientation: int) -> None:
    """A JPEG with an APP1 Exif segment holding only the Orientation tag (0x0112)."""
    data = path.read_bytes()
    assert data[:2] == b"\xff\xd8"
    ifd = b"\x00\x01" + b"\x01\x12\x00\x03\x00\x00\x00\x01" + orientation.to_bytes(2, "big") + b"\x00\x00"
    payload = b"Exif\x00\x00" + b"MM\x00\x2a\x00\x00\x00\x08" + ifd + b"\x00\x00\x00\x00"
    path.write_bytes(data[:2] + b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload + data[2:])


def test_image_variants(tmp_path: Path, synth: SynthCameraPoses) -> None:
    """16-bit PNGs (written as 8-bit), grayscale JPEGs (written as three equal channels), and JPEGs
    whose EXIF says 'rotate 90 degrees' (read as stored, as COLMAP reads them; the size, when w and h
    are missing, is the stored one too)."""
    sources = [cv2.imread(str(path)) for path in synth.images]
    sparse = write_colmap_text(synth, tmp_path / "project")
    for path in (tmp_path / "project" / "images").glob("*.png"):
        cv2.imwrite(str(path), cv2.imread(str(path)).astype(np.uint16) * 257)
    assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    assert _import("colmap", sparse, "--out", tmp_path / "deep") == 0
    _assert_poses(tmp_path / "deep", synth.translations, synth.quats_xyzw)
    _assert_images(tmp_path / "deep", sources)

    path = write_transforms(synth, tmp_path / "gray")
    jpegs = sorted((tmp_path / "gray" / "images").glob("*.jpg"))
    for jpeg in jpegs:
        cv2.imwrite(str(jpeg), cv2.cvtColor(cv2.imread(str(jpeg)), cv2.COLOR_BGR2GRAY))
    assert cv2.imread(str(jpegs[0]), cv2.IMREAD_UNCHANGED).ndim == 2
    assert _import("nerfstudio", path, "--out", tmp_path / "g") == 0
    _assert_poses(tmp_path / "g", synth.translations, synth.quats_xyzw)
    _assert_images(
        tmp_path / "g",
        [cv2.cvtColor(cv2.imread(str(j), cv2.IMREAD_GRAYSCALE), cv2.COLOR_GRAY2BGR) for j in jpegs],
    )

    path = write_transforms(synth, tmp_path / "exif")
    jpegs = sorted((tmp_path / "exif" / "images").glob("*.jpg"))
    stored = [cv2.imread(str(jpeg)) for jpeg in jpegs]
    for jpeg in jpegs:
        _with_exif_orientation(jpeg, 6)
    assert cv2.imread(str(jpegs[0])).shape[:2] == (64, 48)  # OpenCV's default read turns it
    data = json.loads(path.read_text())
    del data["w"], data["h"]
    path.write_text(json.dumps(data))
    assert _import("nerfstudio", path, "--out", tmp_path / "e") == 0
    _assert_poses(tmp_path / "e", synth.translations, synth.quats_xyzw)
    assert imported_camera_poses(tmp_path / "e")[3] == synth.intrinsics
    _assert_images(tmp_path / "e", stored)


@pytest.mark.parametrize(("in_file", "on_disk"), [("NFC", "NFD"), ("NFD", "NFC")])
def test_a_name_spelt_in_the_other_unicode_normal_form_is_found(
    tmp_path: Path, synth: SynthCameraPoses, in_file: str, on_disk: str
) -> None:
    """images.txt written on Linux names "straße_ü.png" composed (NFC); the photographs came off a
    Mac, which writes names decomposed (NFD). It was "1 of the 12 images ... missing"."""
    project = tmp_path / "project"
    sparse = write_colmap_text(synth, project)
    name = "straße_ü.png"
    (project / "images" / "frame_004.png").rename(project / "images" / unicodedata.normalize(on_disk, name))
    images_txt = sparse / "images.txt"
    named = unicodedata.normalize(in_file, name)
    images_txt.write_text(images_txt.read_text().replace("frame_004.png", named))
    out = tmp_path / "data"
    assert _import("colmap", project, "--out", out) == 0
    # frame_004's image sorts last by name now, so its pose is last in time order
    order = [0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 4]
    _assert_poses(out, synth.translations[order], synth.quats_xyzw[order])
    _assert_images(out, [cv2.imread(str(synth.images[k])) for k in order])


def test_other_unicode_forms_in_folders_and_with_the_nerfstudio_lookups(
    tmp_path: Path, synth: SynthCameraPoses
) -> None:
    """Per path component, and through nerfstudio's extension and case lookups and its size probe:
    each of these was "12 of the 12 images ... missing" (or "none of the 12 images named exists")."""
    # COLMAP: --images names the folder composed, the disk holds it (and the files) decomposed
    project = tmp_path / "project"
    sparse = write_colmap_text(synth, project)
    folder = "Fotos_Müller"
    (project / "images").rename(project / unicodedata.normalize("NFD", folder))
    images = project / unicodedata.normalize("NFC", folder)
    assert _import("colmap", sparse, "--images", images, "--out", tmp_path / "a") == 0
    _assert_poses(tmp_path / "a", synth.translations, synth.quats_xyzw)
    # nerfstudio: extension-less names (instant-ngp), files .JPG, folder and names decomposed, no w/h
    path = write_transforms(synth, tmp_path / "ns")
    data = json.loads(path.read_text())
    for key in ("w", "h"):
        del data[key]
    nfc, nfd = (unicodedata.normalize(form, "Bäume") for form in ("NFC", "NFD"))
    (tmp_path / "ns" / "images").rename(tmp_path / "ns" / nfd)
    for image in sorted((tmp_path / "ns" / nfd).glob("frame_*.jpg")):
        image.rename(image.with_name(nfd + image.stem.removeprefix("frame") + ".JPG"))
    for frame in data["frames"]:
        frame["file_path"] = frame["file_path"].replace("images/frame", f"{nfc}/{nfc}")
    path.write_text(json.dumps(data))
    assert _import("nerfstudio", path, "--out", tmp_path / "b") == 0
    _assert_poses(tmp_path / "b", synth.translations, synth.quats_xyzw)
    assert imported_camera_poses(tmp_path / "b")[3] == synth.intrinsics
