"""`pose-train import` (issue 16, item 4): COLMAP, nerfstudio and TUM files written from synthetic
renders are imported and their camera poses compared exactly after the round trip."""

from __future__ import annotations

import json
import math
import re
import shutil
import struct
from pathlib import Path

import cv2
import numpy as np
import pycolmap
import pytest
import yaml

from pose_regressor.dataset_folder import length_unit
from pose_regressor.pose import canonical_hemisphere
from pose_regressor.rig import LensDistortion, PinholeIntrinsics, Rig, RigCamera, RigError
from pose_regressor_training.cli import main
from pose_regressor_training.data.block_split import SplitPolicy, block_splits
from pose_regressor_training.data.folder import load_folder, read_metadata, read_rig, write_metadata
from pose_regressor_training.data.importers.tum import read_image_list
from tests.unit.importer_fixtures import (
    COLMAP_OPENCV_PARAMS,
    SynthCameraPoses,
    imported_camera_poses,
    write_colmap_binary,
    write_colmap_by_colmap,
    write_colmap_text,
    write_transforms,
    write_tum,
)

ATOL = 1e-9


def _import(*args: str | Path) -> int:
    return main(["import", *(str(a) for a in args), "--quiet"])


def _assert_same_poses(out: Path, synth: SynthCameraPoses, scale: float = 1.0) -> list[str]:
    t, q, splits, _ = imported_camera_poses(out)
    np.testing.assert_allclose(t, synth.translations * scale, rtol=0, atol=ATOL)
    np.testing.assert_allclose(
        canonical_hemisphere(q), canonical_hemisphere(synth.quats_xyzw), rtol=0, atol=ATOL
    )
    return splits


def _assert_same_images(out: Path, sources: list[Path]) -> None:
    """The written PNGs hold exactly the decoded source images (JPEG ones included), in time order."""
    for index, source in enumerate(sources):
        written = cv2.imread(str(out / "images" / "camera" / f"{index:06d}.png"))
        expected = cv2.imread(str(source))
        assert written is not None and np.array_equal(written, expected)


def _assert_base_looks_along_optical_axis(out: Path) -> None:
    """The convention of the benchmark loaders: base +x is the optical axis, base z is image up."""
    camera = read_rig(out).cameras[0]
    np.testing.assert_allclose(camera.translation, 0.0, atol=0)
    np.testing.assert_allclose(camera.rotation_matrix() @ [0, 0, 1], [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(camera.rotation_matrix() @ [0, -1, 0], [0, 0, 1], atol=1e-12)


@pytest.mark.parametrize("kind", ["text", "binary"])
def test_colmap_round_trip(tmp_path: Path, synth: SynthCameraPoses, kind: str) -> None:
    project = tmp_path / "project"
    (write_colmap_text if kind == "text" else write_colmap_binary)(synth, project)
    out = tmp_path / "data"
    assert _import("colmap", project, "--out", out, "--split-blocks", "4", "--test-every", "2") == 0
    splits = _assert_same_poses(out, synth)
    assert splits == ["train"] * 3 + ["test"] * 3 + ["val"] * 3 + ["test"] * 3
    _, _, _, intrinsics = imported_camera_poses(out)
    assert intrinsics == synth.intrinsics
    assert read_rig(out).cameras[0].distortion is None
    _assert_same_images(out, synth.images)
    _assert_base_looks_along_optical_axis(out)
    frames = load_folder(out, "train")
    assert len(frames) == 3 and frames.rig.names == ["camera"]
    assert not list(tmp_path.glob(".data.partial-*"))


@pytest.mark.parametrize(
    ("camera_size", "scale"),
    [((256, 192), "0.25 x 0.25"), ((257, 193), "0.249 x 0.2487")],  # exact quarter; sides rounded
)
def test_images_stored_smaller_than_the_pose_files_camera_get_its_intrinsics_scaled(
    tmp_path: Path,
    synth: SynthCameraPoses,
    camera_size: tuple[int, int],
    scale: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Mip-NeRF 360's layout: a COLMAP model of the full-size photographs, and the copies one trains
    on in images_4. Refused before (`image ... is 64x48 but the camera is 256x192`)."""
    project = tmp_path / "project"
    sparse = write_colmap_text(synth, project)
    (project / "images").rename(project / "images_4")
    width, height = camera_size
    intr = synth.intrinsics
    fx, fy, cx, cy = (v * width / intr.width for v in (intr.fx, intr.fy, intr.cx, intr.cy))
    (sparse / "cameras.txt").write_text(f"7 PINHOLE {width} {height} {fx!r} {fy!r} {cx!r} {cy!r}\n")
    out = tmp_path / "data"
    capsys.readouterr()
    args = ["import", "colmap", str(sparse), "--images", str(project / "images_4"), "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert f"(1 camera: camera, {intr.width}x{intr.height}," in printed
    assert f"images are 64x48 but the input's camera is {width}x{height}: " in printed
    assert f"intrinsics scaled by {scale} to the images" in printed
    _assert_same_poses(out, synth)
    _assert_same_images(out, synth.images)
    _, _, _, imported = imported_camera_poses(out)
    assert (imported.width, imported.height) == (intr.width, intr.height)
    sx, sy = intr.width / width, intr.height / height  # each side by its own ratio
    assert (imported.fx, imported.cx) == pytest.approx((fx * sx, cx * sx), rel=1e-15)
    assert (imported.fy, imported.cy) == pytest.approx((fy * sy, cy * sy), rel=1e-15)
    if width == 4 * intr.width:  # a power of two: back to the rendered camera exactly
        assert imported == intr
    assert any("intrinsics scaled by" in note for note in read_metadata(out)["provenance"]["notes"])


def test_a_cropped_image_or_images_of_two_sizes_are_refused(
    tmp_path: Path, synth: SynthCameraPoses, capsys: pytest.CaptureFixture[str]
) -> None:
    project = tmp_path / "project"
    sparse = write_colmap_text(synth, project)
    intr = synth.intrinsics
    cameras = sparse / "cameras.txt"
    cameras.write_text(f"7 PINHOLE 64 64 {intr.fx!r} {intr.fy!r} 32.0 32.0\n")
    message = _expect_error(capsys, tmp_path, "colmap", sparse)
    assert "frame_000.png is 64x48 but the camera is 64x64, and not at its aspect (x 1, y 0.75 " in message
    cameras.write_text(f"7 PINHOLE 64 48 {intr.fx!r} {intr.fy!r} {intr.cx!r} {intr.cy!r}\n")
    image = project / "images" / "frame_005.png"
    cv2.imwrite(str(image), cv2.resize(cv2.imread(str(image)), (32, 24)))
    message = _expect_error(capsys, tmp_path, "colmap", sparse)
    assert "frame_005.png is 32x24 but the camera and the first image are 64x48; " in message


def test_images_too_small_to_train_on_are_refused(
    tmp_path: Path, synth: SynthCameraPoses, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 1x1 copy is at any camera's aspect within a resize's rounding; it was imported as a
    resize of the 64x48 camera (and of a 4000x3000 one) and trained on."""
    project = tmp_path / "project"
    sparse = write_colmap_text(synth, project)
    for image in sorted((project / "images").iterdir()):
        cv2.imwrite(str(image), cv2.resize(cv2.imread(str(image)), (1, 1), interpolation=cv2.INTER_AREA))
    message = _expect_error(capsys, tmp_path, "colmap", sparse)
    assert "frame_000.png is 1x1: too small to train on (at least 16 px a side)" in message


@pytest.mark.parametrize("binary", [False, True])
def test_colmap_model_written_by_colmap_itself(
    tmp_path: Path, synth: SynthCameraPoses, binary: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    """A model written by COLMAP 4 (pycolmap): rigs and frames files beside cameras and images,
    a deregistered image, and a second camera. The importer reads what COLMAP writes, not only
    what our own fixture writers write."""
    unregistered = 5
    sparse = write_colmap_by_colmap(
        synth, tmp_path / "project", binary, unregistered=unregistered, second_camera_images=3
    )
    written = sorted(path.name for path in sparse.iterdir())
    suffix = ".bin" if binary else ".txt"
    assert written == [f"{name}{suffix}" for name in ("cameras", "frames", "images", "points3D", "rigs")]
    out = tmp_path / "data"
    assert _import("colmap", tmp_path / "project", "--out", out) == 2
    assert "--camera-id" in capsys.readouterr().err
    assert not out.exists()
    assert _import("colmap", tmp_path / "project", "--out", out, "--camera-id", "1") == 0
    t, q, _, intrinsics = imported_camera_poses(out)
    kept = [k for k in range(len(synth.images)) if k != unregistered]
    np.testing.assert_allclose(t, synth.translations[kept], rtol=0, atol=ATOL)
    np.testing.assert_allclose(
        canonical_hemisphere(q), canonical_hemisphere(synth.quats_xyzw[kept]), rtol=0, atol=ATOL
    )
    assert intrinsics == synth.intrinsics
    _assert_same_images(out, [synth.images[k] for k in kept])
    # COLMAP reads back exactly what it wrote: the fixture is COLMAP's own format.
    model = pycolmap.Reconstruction(str(sparse))
    assert model.num_reg_images() == len(synth.images) - 1 + 3


def test_a_project_of_several_models_imports_the_largest_and_says_so(
    tmp_path: Path, synth: SynthCameraPoses, capsys: pytest.CaptureFixture[str]
) -> None:
    """COLMAP's mapper numbers its models in the order it started them: sparse/0 may be a fragment."""
    fragment = write_colmap_text(synth, tmp_path / "project")
    shutil.copytree(fragment, fragment.parent / "1")
    lines = (fragment / "images.txt").read_text().splitlines()
    (fragment / "images.txt").write_text("\n".join(lines[: 2 + 2 * 3]) + "\n")  # 3 of the 12 images
    out = tmp_path / "data"
    assert _import("colmap", tmp_path / "project", "--out", out) == 0
    printed = capsys.readouterr().out
    assert "holds 2 models; imported 1, the largest (12 images), not 0 (3 images)" in printed
    _assert_same_poses(out, synth)
    assert "imported 1, the largest" in read_metadata(out)["provenance"]["notes"][0]
    # The sparse folder itself, too; a model folder given by name is taken as it is.
    assert _import("colmap", tmp_path / "project" / "sparse", "--out", tmp_path / "same") == 0
    _assert_same_poses(tmp_path / "same", synth)
    assert "imported 1, the largest" in capsys.readouterr().out
    small = tmp_path / "small"
    assert _import("colmap", fragment, "--out", small, "--split-blocks", "3", "--test-every", "3") == 0
    assert len(imported_camera_poses(small)[0]) == 3
    assert "models" not in capsys.readouterr().out


def test_colmap_opencv_model_records_distortion(tmp_path: Path, synth: SynthCameraPoses) -> None:
    sparse = write_colmap_text(synth, tmp_path / "project", model="OPENCV")
    out = tmp_path / "data"
    assert _import("colmap", sparse, "--images", tmp_path / "project" / "images", "--out", out) == 0
    _assert_same_poses(out, synth)
    camera = read_rig(out).cameras[0]
    fx, fy, cx, cy, k1, k2, p1, p2 = COLMAP_OPENCV_PARAMS
    assert camera.intrinsics == PinholeIntrinsics(64, 48, fx, fy, cx, cy)
    assert camera.distortion == LensDistortion(k1=k1, k2=k2, p1=p1, p2=p2)
    written = read_metadata(out)["rig"]["cameras"][0]["distortion"]
    assert written == {"model": "plumb_bob", "k1": k1, "k2": k2, "p1": p1, "p2": p2, "k3": 0.0}


def test_colmap_simple_pinhole(tmp_path: Path, synth: SynthCameraPoses) -> None:
    write_colmap_text(synth, tmp_path / "project", model="SIMPLE_PINHOLE")
    out = tmp_path / "data"
    assert _import("colmap", tmp_path / "project", "--out", out) == 0
    assert imported_camera_poses(out)[3] == synth.intrinsics  # fx == fy in the synthetic rig


def _one_camera_per_image(
    sparse: Path, intr: PinholeIntrinsics, focal_factors: list[float], k1s: list[float]
) -> None:
    """cameras.txt and images.txt of `write_colmap_text` rewritten as COLMAP writes them by default
    (no --ImageReader.single_camera): camera k + 1 for image k, each SIMPLE_RADIAL refined apart."""
    size, centre = f"{intr.width} {intr.height}", f"{intr.cx!r} {intr.cy!r}"
    (sparse / "cameras.txt").write_text(
        "".join(
            f"{k + 1} SIMPLE_RADIAL {size} {intr.fx * factor!r} {centre} {k1!r}\n"
            for k, (factor, k1) in enumerate(zip(focal_factors, k1s, strict=True))
        )
    )
    images = (sparse / "images.txt").read_text()
    for k in range(len(focal_factors)):
        images = re.sub(rf" \d+ frame_{k:03d}.png", f" {k + 1} frame_{k:03d}.png", images)
    (sparse / "images.txt").write_text(images)


def test_per_image_cameras_of_one_lens_are_merged_into_their_median(
    tmp_path: Path, synth: SynthCameraPoses, capsys: pytest.CaptureFixture[str]
) -> None:
    """COLMAP's default, one camera per image, each refined apart; refused before with --camera-id,
    which keeps one image."""
    sparse = write_colmap_text(synth, tmp_path / "project")
    count = len(synth.images)
    factors = [1.0 + 0.01 * (k - (count - 1) / 2) / count for k in range(count)]  # ±0.5% about 1
    k1s = [0.002 * (k - (count - 1) / 2) / count for k in range(count)]  # ±0.001 about 0
    _one_camera_per_image(sparse, synth.intrinsics, factors, k1s)
    out = tmp_path / "data"
    capsys.readouterr()
    assert _import("colmap", tmp_path / "project", "--out", out) == 0
    printed = capsys.readouterr().out
    assert f"{count} cameras for {count} images, estimates of one lens: they project within 0.2" in printed
    _assert_same_poses(out, synth)
    camera = read_rig(out).cameras[0]
    intr = synth.intrinsics
    assert (camera.intrinsics.fx, camera.intrinsics.fy) == pytest.approx((intr.fx, intr.fx), rel=1e-12)
    assert (camera.intrinsics.cx, camera.intrinsics.cy) == (intr.cx, intr.cy)
    assert camera.distortion is not None
    assert camera.distortion.coefficients == pytest.approx([0] * 5, abs=1e-15)
    assert "estimates of one lens" in read_metadata(out)["provenance"]["notes"][-1]

    shutil.rmtree(out)
    factors[3] = 1.1  # one image's focal length 10% off: 4 px at the corners of 64x48, 5% of the diagonal
    _one_camera_per_image(sparse, synth.intrinsics, factors, k1s)
    message = _expect_error(capsys, tmp_path, "colmap", sparse)
    assert f"the images of {sparse} use {count} cameras that project up to 3.9 px apart (4.9% " in message
    assert "% of the image diagonal; at most 3% is taken as one lens" in message
    assert "pick one with --camera-id or reconstruct with --ImageReader.single_camera 1" in message


def test_per_frame_nerfstudio_intrinsics_of_one_lens_are_merged(
    tmp_path: Path, synth: SynthCameraPoses, capsys: pytest.CaptureFixture[str]
) -> None:
    """Polycam's exports: ARKit's per-frame intrinsics, a little apart."""
    path = write_transforms(synth, tmp_path / "ns", per_frame_intrinsics=True)
    data = json.loads(path.read_text())
    for k, frame in enumerate(data["frames"]):
        frame["fl_x"] *= 1 + 0.002 * (k % 3 - 1)
        frame["cx"] += 0.1 * (k % 3 - 1)
    path.write_text(json.dumps(data))
    out = tmp_path / "data"
    capsys.readouterr()
    assert _import("nerfstudio", path, "--out", out) == 0
    assert "3 cameras for 12 images, estimates of one lens" in capsys.readouterr().out
    assert imported_camera_poses(out)[3] == synth.intrinsics  # the median of each: the middle value
    shutil.rmtree(out)
    data["frames"][0]["w"] = 2 * synth.intrinsics.width
    path.write_text(json.dumps(data))
    message = _expect_error(capsys, tmp_path, "nerfstudio", path)
    assert f"the images of {path} have cameras of 2 sizes (64x48, 128x48); a mono rig has one" in message


@pytest.mark.parametrize("per_frame", [False, True])
def test_nerfstudio_round_trip_with_jpeg_images(
    tmp_path: Path, synth: SynthCameraPoses, per_frame: bool
) -> None:
    path = write_transforms(synth, tmp_path / "ns", per_frame_intrinsics=per_frame)
    out = tmp_path / "data"
    assert _import("nerfstudio", path, "--out", out, "--no-val") == 0
    splits = _assert_same_poses(out, synth)
    assert splits.count("val") == 0 and splits.count("test") == 2  # 10 blocks of 1-2 frames, 5 and 10 test
    assert imported_camera_poses(out)[3] == synth.intrinsics
    _assert_same_images(out, sorted((tmp_path / "ns" / "images").glob("*.jpg")))
    _assert_base_looks_along_optical_axis(out)


def test_images_the_input_names_but_lacks_stop_the_import_or_are_left_out_on_request(
    tmp_path: Path, synth: SynthCameraPoses, capsys: pytest.CaptureFixture[str]
) -> None:
    # as instant-ngp's fox set ships: its transforms.json names 67 images, its folder holds 50
    path = write_transforms(synth, tmp_path / "ns")
    images = sorted((tmp_path / "ns" / "images").glob("*.jpg"))
    for gone in (images[3], images[7]):
        gone.unlink()
    count = len(images)
    names = sorted(f"images/{images[i].stem}" for i in (3, 7))  # the file names extensions
    err = _expect_error(capsys, tmp_path, "nerfstudio", path)
    assert any(f"/{name} does not exist (named '{name}' by the input); " in err for name in names), err
    assert f"2 of the {count} images the input names are missing: pass --skip-missing to import the " in err
    out = tmp_path / "data"
    assert _import("nerfstudio", path, "--out", out, "--skip-missing") == 0
    assert "left out 2 frames whose image does not exist (images/frame_00" in capsys.readouterr().out
    kept = [i for i in range(count) if i not in (3, 7)]
    t, q, _, _ = imported_camera_poses(out)
    np.testing.assert_allclose(t, synth.translations[kept], rtol=0, atol=ATOL)
    np.testing.assert_allclose(
        canonical_hemisphere(q), canonical_hemisphere(synth.quats_xyzw[kept]), rtol=0, atol=ATOL
    )
    _assert_same_images(out, [images[i] for i in kept])
    provenance = read_metadata(out)["provenance"]
    assert sorted(provenance["skipped_missing_images"]) == names
    shutil.rmtree(out)
    for image in images:
        if image.exists():
            image.unlink()
    assert f"none of the {count} images named by " in _expect_error(
        capsys, tmp_path, "nerfstudio", path, "--skip-missing"
    )


def test_tum_round_trip(tmp_path: Path, synth: SynthCameraPoses, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_tum(synth, tmp_path / "tum")
    out = tmp_path / "data"
    intr = synth.intrinsics
    code = _import("tum", folder, "--out", out, "--intrinsics", intr.fx, intr.fy, intr.cx, intr.cy)
    assert code == 0
    assert "1 of 13 images have no ground truth within 0.02 s" in capsys.readouterr().out
    _assert_same_poses(out, synth)
    assert imported_camera_poses(out)[3] == synth.intrinsics
    stamps = [f.stamp_ns for f in load_folder(out).frames]
    assert stamps == synth.stamps_ns  # the images' own stamps
    _assert_same_images(out, synth.images)


def test_tum_interpolates_between_the_ground_truth_poses_around_each_image(
    tmp_path: Path, synth: SynthCameraPoses, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "tum"
    (folder / "rgb").mkdir(parents=True)
    quarter_turn = [0.0, 0.0, np.sin(np.pi / 4), np.cos(np.pi / 4)]  # 90 deg about z
    gt = [(1.0, [0, 0, 0], [0, 0, 0, 1]), (1.04, [1, 2, 3], quarter_turn), (2.0, [1, 2, 3], quarter_turn)]
    (folder / "groundtruth.txt").write_text(
        "".join(f"{s:.4f} " + " ".join(repr(float(v)) for v in (*t, *q)) + "\n" for s, t, q in gt)
    )
    # kept: a quarter of the way, on a pose, 10 ms before the first, 10 ms after the last;
    # left out: 30 ms before the first, in the middle of the 0.96 s gap
    stamps = [1.01, 1.04, 0.99, 2.01, 0.97, 1.5]
    for stamp in stamps:
        shutil.copy(synth.images[0], folder / "rgb" / f"{stamp:.4f}.png")
    (folder / "rgb.txt").write_text("".join(f"{s:.4f} rgb/{s:.4f}.png\n" for s in stamps))
    out = tmp_path / "data"
    intr = synth.intrinsics
    intrinsics = ("--intrinsics", intr.fx, intr.fy, intr.cx, intr.cy)
    assert _import("tum", folder, "--out", out, *intrinsics, "--split-blocks", 4, "--test-every", 2) == 0
    assert "2 of 6 images have no ground truth within 0.02 s (--max-time-diff)" in capsys.readouterr().out
    t, q, _, _ = imported_camera_poses(out)  # in time order: 0.99, 1.01, 1.04, 2.01
    eighth = [0.0, 0.0, np.sin(np.pi / 16), np.cos(np.pi / 16)]  # 22.5 deg: a quarter of the slerp
    np.testing.assert_allclose(t, [[0, 0, 0], [0.25, 0.5, 0.75], [1, 2, 3], [1, 2, 3]], rtol=0, atol=ATOL)
    expected_q = np.array([[0, 0, 0, 1], eighth, quarter_turn, quarter_turn])
    np.testing.assert_allclose(canonical_hemisphere(q), expected_q, rtol=0, atol=ATOL)

    # a row written twice (the quaternion's sign flipped) changes nothing; a second, different
    # pose at one time is refused, naming both lines
    shutil.rmtree(out)
    gt_path = folder / "groundtruth.txt"
    rows = gt_path.read_text().splitlines()
    flipped = " ".join(repr(-float(v)) for v in quarter_turn)
    gt_path.write_text("\n".join([*rows, f"1.0400 1 2 3 {flipped}"]) + "\n")
    assert _import("tum", folder, "--out", out, *intrinsics, "--split-blocks", 4, "--test-every", 2) == 0
    np.testing.assert_allclose(imported_camera_poses(out)[0], t, rtol=0, atol=ATOL)
    shutil.rmtree(out)
    gt_path.write_text("\n".join([*rows, "1.0400 1 2 3.5 0 0 0 1"]) + "\n")
    err = _expect_error(capsys, tmp_path, "tum", folder, *intrinsics, "--split-blocks", 4, "--test-every", 2)
    assert err.endswith(
        f"{gt_path}:4: a second, different pose at time 1.0400 s (the first is on line 2); "
        "a ground-truth file has one pose per time\n"
    ), err


def test_scale_from_two_named_frames(tmp_path: Path, synth: SynthCameraPoses) -> None:
    write_colmap_binary(synth, tmp_path / "project")
    out = tmp_path / "data"
    code = _import(
        "colmap", tmp_path / "project", "--out", out, "--scale-from", "frame_000.png", "frame_011.png", "2.5"
    )
    assert code == 0
    t, _, _, _ = imported_camera_poses(out)
    assert abs(float(np.linalg.norm(t[11] - t[0])) - 2.5) < 1e-12
    scale = 2.5 / float(np.linalg.norm(synth.translations[11] - synth.translations[0]))
    _assert_same_poses(out, synth, scale)
    assert read_metadata(out)["provenance"]["units"] == "metres"


def test_scale_option_and_units_without_one(
    tmp_path: Path, synth: SynthCameraPoses, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_transforms(synth, tmp_path / "ns")
    assert _import("nerfstudio", path, "--out", tmp_path / "a", "--scale", "0.25") == 0
    _assert_same_poses(tmp_path / "a", synth, 0.25)
    assert _import("nerfstudio", path, "--out", tmp_path / "b") == 0
    assert "positions are in the input's own units, not metres" in capsys.readouterr().out
    assert read_metadata(tmp_path / "b")["provenance"]["units"].startswith("the source's own units")
    # what fit, eval and eval-folder label the positions and errors with
    assert length_unit(read_metadata(tmp_path / "a")) == "m"
    assert length_unit(read_metadata(tmp_path / "b")) == "units"
    assert length_unit({"provenance": {"generator": "pose-train synth"}}) == "m"  # no units: ours, metres
    assert length_unit({}) == "m"


@pytest.mark.parametrize(
    ("count", "policy", "expected"),
    [
        (10, SplitPolicy(10, 5, True), "TTTTsvTTTs"),
        (10, SplitPolicy(10, 5, False), "TTTTsTTTTs"),
        (7, SplitPolicy(3, 2, True), "TTsssvv"),  # blocks of 2, 3, 2 frames
        (20, SplitPolicy(4, 3, True), "TTTTTTTTTTsssssvvvvv"),
        # the default: 20 blocks, every 5th test, so val holds three stretches and test four
        (40, SplitPolicy(), "TTTTTTTTssvvTTTTTTssvvTTTTTTssvvTTTTTTss"),
        # fewer frames than the default's blocks: one block per frame
        (12, SplitPolicy(), "TTTTsvTTTsvT"),
        (1, SplitPolicy(test_every=1), None),
    ],
)
def test_block_splits_are_contiguous_blocks(count: int, policy: SplitPolicy, expected: str | None) -> None:
    letters = {"train": "T", "val": "v", "test": "s"}
    if expected is None:
        with pytest.raises(ValueError, match="makes every block a test block"):
            block_splits(count, policy)
        return
    assert "".join(letters[split] for split, _ in block_splits(count, policy)) == expected


@pytest.mark.parametrize(
    ("count", "policy", "message"),
    [
        (5, SplitPolicy(6, 2, True), "more than the 5 frames"),
        (10, SplitPolicy(4, 5, True), "leaves no test block"),
        (10, SplitPolicy(4, 1, True), "nothing is left to train on"),
        (10, SplitPolicy(2, 2, True), None),
        # the default with fewer frames than blocks says so instead of naming a number never given
        (3, SplitPolicy(), r"--test-every 5 > the 3 frames \(one block each\) leaves no test block"),
    ],
)
def test_block_split_errors(count: int, policy: SplitPolicy, message: str | None) -> None:
    if message is None:
        assert [s for s, _ in block_splits(count, policy)] == ["train"] * 5 + ["test"] * 5
        return
    with pytest.raises(ValueError, match=message):
        block_splits(count, policy)


def _expect_error(capsys: pytest.CaptureFixture[str], tmp_path: Path, *args: str | Path) -> str:
    out = tmp_path / "data"
    assert _import(*args, "--out", out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("pose-train import: error: "), err
    assert not out.exists() and not list(tmp_path.glob(".data.*"))
    return err


def test_bad_colmap_input_is_one_line(
    tmp_path: Path, synth: SynthCameraPoses, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "does not exist" in _expect_error(capsys, tmp_path, "colmap", tmp_path / "nowhere")
    sparse = write_colmap_text(synth, tmp_path / "project")
    images_txt = sparse / "images.txt"
    good = images_txt.read_text()
    lines = good.splitlines()
    lines[2] = lines[2].replace(" 7 frame_011", " 7.5 frame_011")
    images_txt.write_text("\n".join(lines) + "\n")
    assert f"{images_txt}:3: IMAGE_ID and CAMERA_ID must be integers" in _expect_error(
        capsys, tmp_path, "colmap", sparse
    )
    images_txt.write_text(good)
    cameras_txt = sparse / "cameras.txt"
    cameras_txt.write_text("7 PINHOLE_PLUS 64 48 1 2 3 4\n")
    assert f"{cameras_txt}:1: unknown camera model 'PINHOLE_PLUS'" in _expect_error(
        capsys, tmp_path, "colmap", sparse
    )
    cameras_txt.write_text("7 OPENCV_FISHEYE 64 48 30 30 32 24 0 0 0 0\n")
    assert "has model OPENCV_FISHEYE; supported: " in _expect_error(capsys, tmp_path, "colmap", sparse)
    cameras_txt.write_text("7 PINHOLE 64 48 32 32 32 24\n7 PINHOLE 64 48 40 40 32 24\n")
    assert f"{cameras_txt}:2: camera 7 is defined again (first at {cameras_txt}:1); " in _expect_error(
        capsys, tmp_path, "colmap", sparse
    )
    cameras_txt.write_text("7 PINHOLE 64 48 32 32 32 24\n")
    (tmp_path / "project" / "images" / "frame_004.png").write_bytes(b"not a png")
    assert "frame_004.png cannot be read as an image" in _expect_error(capsys, tmp_path, "colmap", sparse)
    (tmp_path / "project" / "images" / "frame_004.png").unlink()
    assert "frame_004.png does not exist" in _expect_error(capsys, tmp_path, "colmap", sparse)
    images_txt.write_text("# no images\n")
    assert "has no registered image" in _expect_error(capsys, tmp_path, "colmap", sparse)


def test_bad_binary_and_other_formats_are_one_line(
    tmp_path: Path, synth: SynthCameraPoses, capsys: pytest.CaptureFixture[str]
) -> None:
    sparse = write_colmap_binary(synth, tmp_path / "project")
    images_bin = sparse / "images.bin"
    images_bin.write_bytes(images_bin.read_bytes()[:-30])
    assert "images.bin is truncated" in _expect_error(capsys, tmp_path, "colmap", sparse)
    (sparse / "cameras.bin").write_bytes(struct.pack("<QiiQQ4d", 1, 3, 99, 64, 48, 32, 32, 32, 24))
    assert "unknown camera model id 99" in _expect_error(capsys, tmp_path, "colmap", sparse)
    pinhole = struct.pack("<iiQQ4d", 3, 1, 64, 48, 32, 32, 32, 24)  # camera 3, model 1 (PINHOLE)
    (sparse / "cameras.bin").write_bytes(struct.pack("<Q", 2) + pinhole + pinhole)
    assert "cameras.bin (byte 64): camera 3 is defined again (first at " in _expect_error(
        capsys, tmp_path, "colmap", sparse
    )

    path = write_transforms(synth, tmp_path / "ns")
    path.write_text(path.read_text()[:-5])
    assert "transforms.json:" in _expect_error(capsys, tmp_path, "nerfstudio", path)

    folder = write_tum(synth, tmp_path / "tum")
    intrinsics = ("--intrinsics", "32", "32", "32", "24")
    assert "tum needs --intrinsics" in _expect_error(capsys, tmp_path, "tum", folder)
    gt = folder / "groundtruth.txt"
    gt.write_text(gt.read_text() + "1.0 2.0 3.0\n")
    assert f"{gt}:15: expected 'timestamp tx ty tz qx qy qz qw'" in _expect_error(
        capsys, tmp_path, "tum", folder, *intrinsics
    )
    gt.write_text("0.0 0 0 0 0 0 0 1\n")
    assert "no image of" in _expect_error(capsys, tmp_path, "tum", folder, *intrinsics)
    assert "--images is for the colmap format only" in _expect_error(
        capsys, tmp_path, "tum", folder, "--images", folder
    )


def test_colmap_images_txt_without_points2d_lines_is_refused_not_halved(
    tmp_path: Path, synth: SynthCameraPoses, capsys: pytest.CaptureFixture[str]
) -> None:
    """Hand-written images.txt files leave out the POINTS2D lines; skipping the line after each
    pose line dropped every other image. A long POINTS2D line is still one."""
    sparse = write_colmap_text(synth, tmp_path / "project")
    images_txt = sparse / "images.txt"
    lines = images_txt.read_text().splitlines()
    lines[5] = "1 2 -1 3 4 -1 5 6 7 8 9 -1"  # four points: integers where the ids of an image line are
    images_txt.write_text("\n".join(lines) + "\n")
    out = tmp_path / "data"
    assert _import("colmap", sparse, "--images", tmp_path / "project" / "images", "--out", out) == 0
    _assert_same_poses(out, synth)
    shutil.rmtree(out)
    images_txt.write_text("\n".join(lines[:2] + lines[2::2]) + "\n")  # the pose lines only
    assert _expect_error(capsys, tmp_path, "colmap", sparse).endswith(
        f"{images_txt}:4: expected the POINTS2D line of image 'frame_011.png' (it may be empty), found "
        "another image line; COLMAP writes two lines per image\n"
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            "1e-300 32 32 24",
            "focal lengths must be from 0.01 to 1e+06 px (a sane range), got fx 1e-300, fy 32",
        ),
        (
            "32 1e300 32 24",
            "focal lengths must be from 0.01 to 1e+06 px (a sane range), got fx 32, fy 1e+300",
        ),
        (
            "32 32 -1e308 24",
            "the principal point must be within ±1e+06 px (a sane range), got cx -1e+308, cy 24",
        ),
        # projecting with k1 1e300 overflowed to inf when per-image cameras were compared
        ("32 32 32 24 1e300 0 0 0", "distortion k1 must be within ±1000 (a sane range), got 1e+300"),
        ("32 32 32 24 0.1 0 0 -2e3", "distortion p2 must be within ±1000 (a sane range), got -2000"),
    ],
)
def test_colmap_intrinsics_outside_a_sane_range_are_refused(
    tmp_path: Path, synth: SynthCameraPoses, capsys: pytest.CaptureFixture[str], params: str, message: str
) -> None:
    sparse = write_colmap_text(synth, tmp_path / "project")
    cameras_txt = sparse / "cameras.txt"
    model = "OPENCV" if len(params.split()) == 8 else "PINHOLE"
    cameras_txt.write_text(f"7 {model} 64 48 {params}\n")
    assert _expect_error(capsys, tmp_path, "colmap", sparse).endswith(f"{cameras_txt}:1: {message}\n")


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_colmap_binary_camera_parameters_must_be_finite(
    tmp_path: Path, synth: SynthCameraPoses, capsys: pytest.CaptureFixture[str], bad: float
) -> None:
    """As the text reader: a nan k1 was imported, and the dataset loader then refused the folder."""
    sparse = write_colmap_binary(synth, tmp_path / "project")
    params = list(COLMAP_OPENCV_PARAMS)
    params[4] = bad  # k1
    cameras_bin = sparse / "cameras.bin"
    cameras_bin.write_bytes(struct.pack("<QiiQQ8d", 1, 3, 4, 64, 48, *params))  # camera 3, OPENCV
    shown = " ".join(f"{v:g}" for v in params)
    assert _expect_error(capsys, tmp_path, "colmap", sparse).endswith(
        f"{cameras_bin} (byte 8): camera parameters must be finite, got {shown!r}\n"
    )


@pytest.mark.parametrize(
    ("field", "what"),
    [(0, "QW QX QY QZ"), (3, "QW QX QY QZ"), (4, "TX TY TZ"), (6, "TX TY TZ")],
)
def test_colmap_binary_pose_must_be_finite(
    tmp_path: Path, synth: SynthCameraPoses, capsys: pytest.CaptureFixture[str], field: int, what: str
) -> None:
    """In the text reader's words, naming the file and the image's byte, not the pose arithmetic's
    internal names."""
    sparse = write_colmap_binary(synth, tmp_path / "project")
    images_bin = sparse / "images.bin"
    data = bytearray(images_bin.read_bytes())
    struct.pack_into("<d", data, 8 + 4 + 8 * field, math.nan)  # the first image: count, image id, ...
    images_bin.write_bytes(bytes(data))
    assert f"{images_bin} (byte 8): {what} must be finite, got '" in _expect_error(
        capsys, tmp_path, "colmap", sparse
    )


def test_colmap_binary_image_name_that_is_not_utf8_is_named_at_its_first_byte(
    tmp_path: Path, synth: SynthCameraPoses, capsys: pytest.CaptureFixture[str]
) -> None:
    sparse = write_colmap_binary(synth, tmp_path / "project")
    images_bin = sparse / "images.bin"
    data = images_bin.read_bytes()
    images_bin.write_bytes(data.replace(b"frame_011.png", b"frame_\xff11.png"))
    start = 8 + struct.calcsize("<idddddddi")  # the count, then the first image up to its name
    assert start == 72 and data[start:].startswith(b"frame_011.png")
    assert _expect_error(capsys, tmp_path, "colmap", sparse).endswith(
        f"{images_bin}: image name at byte 72 is not UTF-8\n"
    )


def test_nerfstudio_field_of_view_stands_in_for_the_focal_length(
    tmp_path: Path, synth: SynthCameraPoses
) -> None:
    path = write_transforms(synth, tmp_path / "ns")
    data = json.loads(path.read_text())
    intr = synth.intrinsics
    del data["fl_x"], data["fl_y"]
    data["camera_angle_x"] = 2 * math.atan(0.5 * intr.width / intr.fx)
    path.write_text(json.dumps(data))
    out = tmp_path / "data"
    assert _import("nerfstudio", path, "--out", out) == 0
    imported = imported_camera_poses(out)[3]
    assert imported.fx == pytest.approx(intr.fx, rel=1e-12) and imported.fy == pytest.approx(
        intr.fx, rel=1e-12
    )


@pytest.mark.parametrize("per_frame", [False, True])
@pytest.mark.parametrize(
    ("key", "angle"),
    [("camera_angle_x", 0), ("camera_angle_x", 70), ("camera_angle_x", -1.0), ("camera_angle_y", math.pi)],
)
def test_nerfstudio_field_of_view_must_be_radians_between_0_and_pi(
    tmp_path: Path,
    synth: SynthCameraPoses,
    capsys: pytest.CaptureFixture[str],
    per_frame: bool,
    key: str,
    angle: float,
) -> None:
    """0 divided by zero; 70 (degrees by mistake) gave fx 33.8 on a 64 px image, without a word."""
    path = write_transforms(synth, tmp_path / "ns")
    data = json.loads(path.read_text())
    del data["fl_x"], data["fl_y"]
    data["camera_angle_x"] = 1.0
    (data["frames"][2] if per_frame else data)[key] = angle
    path.write_text(json.dumps(data))
    where = f"{path}: frames[2]" if per_frame else f"{path}"
    assert _expect_error(capsys, tmp_path, "nerfstudio", path).endswith(
        f"{where}: {key} must be in radians, between 0 and pi (exclusive), got {angle:g}\n"
    )


@pytest.mark.parametrize("file", ["groundtruth.txt", "rgb.txt"])
def test_tum_stamps_beyond_int64_nanoseconds_are_refused(
    tmp_path: Path, synth: SynthCameraPoses, capsys: pytest.CaptureFixture[str], file: str
) -> None:
    """1e30 s overflowed the int64 stamp array with a traceback; 1e999999999 s overflows Decimal."""
    folder = write_tum(synth, tmp_path / "tum")
    path = folder / file
    intr = synth.intrinsics
    intrinsics = ("--intrinsics", intr.fx, intr.fy, intr.cx, intr.cy)
    lines = path.read_text().splitlines()
    for stamp in ("1e30", "-1e999999999"):
        lines[2] = stamp + " " + lines[2].split(maxsplit=1)[1]
        path.write_text("\n".join(lines) + "\n")
        assert _expect_error(capsys, tmp_path, "tum", folder, *intrinsics).endswith(
            f"{path}:3: timestamp must be within ±9223372036 s (nanoseconds in an int64, up to the year "
            f"2262), got {stamp!r}\n"
        )


def test_tum_stamps_at_the_ends_of_int64_nanoseconds_are_read_exactly(tmp_path: Path) -> None:
    path = tmp_path / "rgb.txt"
    path.write_text("9223372036.854775807 a.png\n-9223372036.854775808 b.png\n")
    assert [stamp for stamp, _, _ in read_image_list(path)] == [2**63 - 1, -(2**63)]


def test_a_file_given_for_a_folder_is_called_a_file(
    tmp_path: Path, synth: SynthCameraPoses, capsys: pytest.CaptureFixture[str]
) -> None:
    """It was said not to exist."""
    folder = write_tum(synth, tmp_path / "tum")
    file = folder / "rgb.txt"
    assert _expect_error(capsys, tmp_path, "tum", file, "--intrinsics", "32", "32", "32", "24").endswith(
        f"TUM sequence folder {file} is not a folder (give the folder holding groundtruth.txt and rgb.txt)\n"
    )
    sparse = write_colmap_text(synth, tmp_path / "project")
    assert _expect_error(capsys, tmp_path, "colmap", sparse, "--images", file).endswith(
        f"image folder {file} is not a folder\n"
    )


def test_an_image_named_twice_or_a_pose_far_beyond_any_map_is_one_line(
    tmp_path: Path, synth: SynthCameraPoses, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_transforms(synth, tmp_path / "ns")
    good = json.loads(path.read_text())
    named_twice = json.loads(path.read_text())
    named_twice["frames"][4]["file_path"] = named_twice["frames"][3]["file_path"]
    path.write_text(json.dumps(named_twice))
    name = good["frames"][3]["file_path"]
    assert f"is named twice by the input ({name!r} and {name!r}); each image must have one pose" in (
        _expect_error(capsys, tmp_path, "nerfstudio", path)
    )
    far = json.loads(path.read_text())
    far["frames"] = good["frames"]
    far["frames"][2]["transform_matrix"][1][3] = 1e300  # finite, and its square overflows
    path.write_text(json.dumps(far))
    err = _expect_error(capsys, tmp_path, "nerfstudio", path)
    assert f"image {good['frames'][2]['file_path']!r}, scaled by 1: the position (" in err
    assert ") is beyond ±1e+08 from the map's origin; the input's poses are broken" in err
    far["frames"][2]["transform_matrix"][1][3] = 200.0
    path.write_text(json.dumps(far))
    err = _expect_error(capsys, tmp_path, "nerfstudio", path, "--scale", "1e6")
    assert "scaled by 1e+06: the position (" in err and ") is beyond ±1e+08" in err


def test_overwrite(tmp_path: Path, synth: SynthCameraPoses, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_transforms(synth, tmp_path / "ns")
    out = tmp_path / "data"
    out.mkdir()
    (out / "old.txt").write_text("x")
    assert _import("nerfstudio", path, "--out", out) == 2
    assert "use --overwrite" in capsys.readouterr().err and (out / "old.txt").exists()
    assert _import("nerfstudio", path, "--out", out, "--overwrite") == 0
    assert not (out / "old.txt").exists() and (out / "frames.csv").exists()
    assert _import("nerfstudio", path, "--out", tmp_path / "ns", "--overwrite") == 2
    assert "must not contain the input files" in capsys.readouterr().err
    sparse = write_colmap_text(synth, tmp_path / "project")
    assert (
        _import("colmap", sparse, "--images", tmp_path / "project" / "images", "--out", sparse, "--overwrite")
        == 2
    )
    assert f"must not contain the input files ({sparse})" in capsys.readouterr().err
    assert (sparse / "images.txt").exists()


def test_dataset_yaml_takes_numpy_numbers(tmp_path: Path) -> None:
    """Issue 16: numpy numbers in the rig or the provenance crashed the YAML writer."""
    intr = PinholeIntrinsics(
        np.int64(64), np.int64(48), np.float64(30.5), np.float32(31.0), np.float64(32), np.float64(24)
    )  # type: ignore[arg-type]
    rig = Rig(
        (
            RigCamera(
                "cam", intr, np.zeros(3), np.array([0.0, 0.0, 0.0, 1.0]), LensDistortion(k1=np.float64(0.1))
            ),
        )
    )  # type: ignore[arg-type]
    provenance = {
        "scale": np.float64(2.0),
        "count": np.int32(3),
        "shape": np.arange(3),
        "pair": (np.float32(0.5), Path("/x")),
    }
    write_metadata(tmp_path, rig, np.float64(10.0), {"train": np.int64(3)}, provenance)  # type: ignore[arg-type, dict-item]
    meta = read_metadata(tmp_path)
    assert meta["provenance"] == {"scale": 2.0, "count": 3, "shape": [0, 1, 2], "pair": [0.5, "/x"]}
    camera = read_rig(tmp_path).cameras[0]
    assert camera.intrinsics == PinholeIntrinsics(64, 48, 30.5, 31.0, 32.0, 24.0)
    assert camera.distortion == LensDistortion(k1=0.1)


def test_rig_distortion_round_trip_and_errors(tmp_path: Path) -> None:
    camera = {"name": "c", "width": 64, "height": 48, "fx": 30, "fy": 30}
    assert "distortion" not in Rig.from_dict({"cameras": [camera]}).to_dict()["cameras"][0]
    rig = Rig.from_dict(
        {"cameras": [{**camera, "distortion": {"model": "plumb_bob", "k1": -0.1, "p2": 0.01}}]}
    )
    assert rig.cameras[0].distortion == LensDistortion(k1=-0.1, p2=0.01)
    assert rig.cameras[0].distortion.coefficients == (-0.1, 0.0, 0.0, 0.01, 0.0)
    again = Rig.from_dict(yaml.safe_load(yaml.safe_dump(rig.to_dict()))).cameras[0]
    assert again.distortion == rig.cameras[0].distortion
    for bad, message in [
        ({"model": "fisheye"}, "distortion model must be one of plumb_bob"),
        ({"k4": 0.1}, "unknown distortion key"),
        ({"k1": "x"}, "distortion k1 must be a finite number"),
        ({"k3": -1e4}, "distortion k3 must be within ±1000"),
        ([0.1], "must be a mapping"),
    ]:
        with pytest.raises(RigError, match=message):
            Rig.from_dict({"cameras": [{**camera, "distortion": bad}]})


def test_bad_options_are_one_line(
    tmp_path: Path, synth: SynthCameraPoses, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_transforms(synth, tmp_path / "ns")
    scale_from = ("--scale-from", "frame_000", "frame_001")
    assert "--scale-from DISTANCE_M must be a number" in _expect_error(
        capsys, tmp_path, "nerfstudio", path, *scale_from, "far"
    )
    assert "must be from 1e-06 to 1e+06, got 0" in _expect_error(
        capsys, tmp_path, "nerfstudio", path, *scale_from, "0"
    )
    assert "no image named 'frame_999'" in _expect_error(
        capsys, tmp_path, "nerfstudio", path, "--scale-from", "frame_000", "frame_999", "1"
    )
    assert "more than the 12 frames" in _expect_error(
        capsys, tmp_path, "nerfstudio", path, "--split-blocks", "13"
    )
    # the default split of 12 frames is one block per frame; the error says so, not a --split-blocks
    assert "--test-every 13 > the 12 frames (one block each) leaves no test block" in _expect_error(
        capsys, tmp_path, "nerfstudio", path, "--test-every", "13"
    )
    with pytest.raises(SystemExit) as exited:
        _import("nerfstudio", path, "--out", tmp_path / "x", "--scale", "2", *scale_from, "1")
    assert exited.value.code == 2
    assert "not allowed with argument --scale" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--scale", "1e-320"), "argument --scale: must be from 1e-06 to 1e+06, got 1e-320"),
        (("--scale", "1e7"), "argument --scale: must be from 1e-06 to 1e+06, got 1e7"),
        (
            ("--scale-from", "frame_000", "frame_011", "1e-300"),
            "--scale-from DISTANCE_M must be from 1e-06 to 1e+06, got 1e-300",
        ),
    ],
)
def test_scale_and_scale_from_distance_outside_their_range_are_one_line(
    tmp_path: Path,
    synth: SynthCameraPoses,
    capsys: pytest.CaptureFixture[str],
    args: tuple[str, ...],
    message: str,
) -> None:
    """--scale 1e-320 was accepted and put every position at about 0."""
    path = write_transforms(synth, tmp_path / "ns")
    out = tmp_path / "data"
    try:
        code = _import("nerfstudio", path, "--out", out, *args)
    except SystemExit as exited:  # argparse
        code = int(exited.code or 0)
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not out.exists()


def test_scale_from_two_frames_giving_a_scale_outside_its_range_is_one_line(
    tmp_path: Path, synth: SynthCameraPoses, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_transforms(synth, tmp_path / "ns")
    apart = float(np.linalg.norm(synth.translations[11] - synth.translations[0]))
    assert 1 < apart < 1e3  # so 1e-6 m gives a scale below 1e-6
    err = _expect_error(
        capsys, tmp_path, "nerfstudio", path, "--scale-from", "frame_000", "frame_011", "1e-6"
    )
    assert err.endswith(
        f"--scale-from: images 'frame_000' and 'frame_011' are {apart:g} input units apart, so 1e-06 m gives "
        f"a scale of {1e-6 / apart:g} m per input unit; it must be from 1e-06 to 1e+06\n"
    ), err
