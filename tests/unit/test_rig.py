"""Rig presets and YAML parsing follow REP-103 optical frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pose_regressor.rig import PinholeIntrinsics, Rig, RigError, load_rig, preset_rig


def test_forward_camera_optical_axes_in_base_frame() -> None:
    cam = preset_rig("mono").cameras[0]
    r = cam.rotation_matrix()
    np.testing.assert_allclose(r[:, 2], [1, 0, 0], atol=1e-12)  # optical z -> base forward
    np.testing.assert_allclose(r[:, 0], [0, -1, 0], atol=1e-12)  # optical x (right) -> base -y
    np.testing.assert_allclose(r[:, 1], [0, 0, -1], atol=1e-12)  # optical y (down) -> base -z


def test_quad_preset_yaws() -> None:
    rig = preset_rig("quad")
    assert rig.names == ["front", "left", "back", "right"]
    yaws = np.degrees([c.yaw() for c in rig.cameras])
    np.testing.assert_allclose(np.mod(yaws, 360.0), [0, 90, 180, 270], atol=1e-9)
    for cam in rig.cameras:
        np.testing.assert_allclose(np.linalg.norm(cam.translation[:2]), 0.1)
        assert cam.optical_frame == f"{cam.name}_optical_frame"
        assert cam.image_topic == f"/{cam.name}/image_raw"


def test_intrinsics_project_pixel_rays_back_to_pixel_centres() -> None:
    intr = PinholeIntrinsics(64, 48, 50.0, 52.0, 31.0, 25.0)
    rays = intr.pixel_rays()
    pix = intr.project(rays * 3.0)
    vv, uu = np.mgrid[0:48, 0:64]
    np.testing.assert_allclose(pix[..., 0], uu + 0.5)
    np.testing.assert_allclose(pix[..., 1], vv + 0.5)


def test_yaml_round_trip(tmp_path: Path) -> None:
    rig = preset_rig("stereo", 80, 60)
    import yaml

    path = tmp_path / "rig.yaml"
    path.write_text(yaml.safe_dump(rig.to_dict()))
    loaded = load_rig(str(path))
    assert loaded.names == rig.names
    for a, b in zip(loaded.cameras, rig.cameras, strict=True):
        assert a.intrinsics == b.intrinsics
        np.testing.assert_allclose(a.translation, b.translation)
        np.testing.assert_allclose(a.rotation_xyzw, b.rotation_xyzw)


def test_yaml_with_yaw_and_default_size(tmp_path: Path) -> None:
    path = tmp_path / "rig.yaml"
    path.write_text("cameras:\n  - {name: side, hfov_deg: 90, yaw_deg: 90, translation: [0, 0.2, 0.5]}\n")
    rig = load_rig(str(path), 120, 90)
    assert rig.cameras[0].intrinsics.width == 120
    assert np.degrees(rig.cameras[0].yaw()) == pytest.approx(90.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cameras: []", "at least one camera"),
        ("cameras:\n  - {name: a, width: 10, height: 10}", "hfov_deg or fx and fy"),
        ("cameras:\n  - {name: a, width: 0, height: 10, hfov_deg: 60}", "positive"),
        ("cameras:\n  - {name: a, width: 10, height: 10, hfov_deg: 60, translation: [1, 2]}", "translation"),
        (
            "cameras:\n  - {name: a, width: 10, height: 10, hfov_deg: 60, rotation_xyzw: [0, 0, 0, 0]}",
            "rotation",
        ),
        (
            "cameras:\n  - {name: a, width: 9, height: 9, hfov_deg: 60}\n"
            "  - {name: a, width: 9, height: 9, hfov_deg: 60}",
            "unique",
        ),
        ("not: a rig", "list under 'cameras'"),
        ("{{{", "not valid YAML"),
    ],
)
def test_bad_rig_files_give_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "rig.yaml"
    path.write_text(text)
    with pytest.raises(RigError, match=message):
        Rig.from_yaml(path)


def test_unknown_preset_and_missing_file() -> None:
    with pytest.raises(RigError, match="neither a preset"):
        load_rig("octo")
    with pytest.raises(RigError, match="cannot read rig file"):
        Rig.from_yaml("/nonexistent/rig.yaml")
