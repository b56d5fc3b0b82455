"""`pose_regressor.camera_info_check`: CameraInfo against the bundle's training rig."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from pose_regressor.bundle import BundleCamera, ModelBundle, load_bundle
from pose_regressor.camera_info_check import (
    ExpectedCamera,
    camera_info_topic,
    check_camera_info,
    expected_cameras,
)
from pose_regressor.rig import PinholeIntrinsics, Rig, RigCamera
from tests.unit.bundle_fixtures import make_bundle

# Calibrated at 640x480; the bundle fixture's cameras are 16x12 on the topics (a 40x reduction).
FRONT = PinholeIntrinsics(640, 480, 320.0, 320.0, 320.0, 240.0)
REAR = PinholeIntrinsics(640, 480, 400.0, 410.0, 330.0, 250.0)
RIG = Rig((RigCamera("front", FRONT), RigCamera("rear", REAR)))
LEFT = ExpectedCamera("left", PinholeIntrinsics(640, 480, 320.0, 320.0, 320.0, 240.0), "left_optical_frame")


def k_of(fx: float, fy: float, cx: float, cy: float) -> list[float]:
    return [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]


@pytest.fixture
def bundle(tmp_path: Path) -> ModelBundle:
    return load_bundle(make_bundle(tmp_path / "bundle", rig=RIG).path)  # through bundle.yaml


def test_expected_cameras_scale_the_rig_to_the_bundle_camera_size(bundle: ModelBundle) -> None:
    expected = expected_cameras(bundle)
    assert expected is not None and list(expected) == ["front", "rear"]
    front, rear = expected["front"], expected["rear"]
    assert (front.width, front.height, front.frame_id) == (16, 12, "front_optical_frame")
    assert front.intrinsics == PinholeIntrinsics(16, 12, 8.0, 8.0, 8.0, 6.0)
    assert rear.intrinsics == PinholeIntrinsics(16, 12, 10.0, 10.25, 8.25, 6.25)
    assert rear.frame_id == "rear_optical_frame"
    # At the rig's own size nothing is scaled.
    same = dataclasses.replace(bundle, cameras=(BundleCamera("front", "/front/image_raw", 640, 480),))
    assert expected_cameras(same) == {"front": ExpectedCamera("front", FRONT, "front_optical_frame")}


def test_expected_cameras_is_none_without_a_usable_rig(tmp_path: Path, bundle: ModelBundle) -> None:
    old = load_bundle(make_bundle(tmp_path / "old").path)  # no rig recorded
    assert "rig" not in old.provenance and expected_cameras(old) is None
    malformed: list[Any] = [
        "quad",
        None,
        {"cameras": "front"},
        {"cameras": [{"name": "front"}]},  # neither fx/fy nor hfov_deg
        {"cameras": [{"name": "front", "width": 64, "height": 48, "fx": [1.0], "fy": 1.0}]},  # TypeError
        {"cameras": [{"name": "front", "width": 64, "height": 48, "fx": 30.0, "fy": 30.0}] * 2},  # dup
        {"cameras": [{"name": "left", "width": 64, "height": 48, "fx": 30.0, "fy": 30.0}]},  # no match
    ]
    for rig in malformed:
        broken = dataclasses.replace(bundle, provenance={**bundle.provenance, "rig": rig})
        assert expected_cameras(broken) is None, rig
    # A rig that knows only some of the bundle's cameras: those are checked.
    partial = {"cameras": [{"name": "rear", "width": 32, "height": 24, "fx": 20.0, "fy": 20.0}]}
    expected = expected_cameras(dataclasses.replace(bundle, provenance={"rig": partial}))
    assert expected is not None and list(expected) == ["rear"]
    assert expected["rear"].intrinsics == PinholeIntrinsics(16, 12, 10.0, 10.0, 8.0, 6.0)


def test_matching_camera_info_passes_at_any_scale(bundle: ModelBundle) -> None:
    expected = expected_cameras(bundle)
    assert expected is not None
    front = expected["front"]
    assert check_camera_info("front", front, 640, 480, k_of(320, 320, 320, 240), "front_optical_frame") == []
    assert (
        check_camera_info("front", front, 1280, 960, k_of(640, 640, 640, 480), "/front_optical_frame") == []
    )
    assert check_camera_info("front", front, 16, 12, k_of(8.1, 7.9, 8.1, 6.1), "front_optical_frame") == []
    # rear's camera_info on front's topic: swapped topics.
    swapped = check_camera_info("front", front, 640, 480, k_of(400, 410, 330, 250), "rear_optical_frame")
    assert swapped == [
        "camera front: camera_info frame_id 'rear_optical_frame' differs from the bundle's "
        "'front_optical_frame': swapped topics or another TF naming?",
        "camera front: camera_info fx 10.0 (scaled to 16x12) differs from the bundle's 8.0 by 25.0% "
        "(> 2%): another lens or swapped topics?",
        "camera front: camera_info fy 10.2 (scaled to 16x12) differs from the bundle's 8.0 by 28.1% "
        "(> 2%): another lens or swapped topics?",
        "camera front: camera_info cy 6.2 (scaled to 16x12) differs from the bundle's 6.0 by 2.1% of the "
        "image height (> 2%): a cropped image or another camera?",
    ]


def test_each_mismatch_is_one_line_with_both_values_and_the_difference() -> None:
    # 1280x960 with fx 824: 412 at 640x480 against 320.
    problems = check_camera_info("left", LEFT, 1280, 960, k_of(824, 640, 640, 480), "left_optical_frame")
    assert problems == [
        "camera left: camera_info fx 412.0 (scaled to 640x480) differs from the bundle's 320.0 by 28.8% "
        "(> 2%): another lens or swapped topics?"
    ]
    problems = check_camera_info("left", LEFT, 640, 480, k_of(320, 320, 352, 240), "left_optical_frame")
    assert problems == [
        "camera left: camera_info cx 352.0 differs from the bundle's 320.0 by 5.0% of the image width "
        "(> 2%): a cropped image or another camera?"
    ]
    # A looser tolerance accepts it.
    assert (
        check_camera_info("left", LEFT, 640, 480, k_of(320, 320, 352, 240), "left_optical_frame", 0.06) == []
    )


def test_uncalibrated_sizeless_malformed_and_stretched_camera_info() -> None:
    zeros = check_camera_info("left", LEFT, 640, 480, [0.0] * 9, "left_optical_frame")
    assert zeros == [
        "camera left: camera_info K is all zeros: the camera is not calibrated "
        "(the bundle expects fx 320.0, fy 320.0 at 640x480)"
    ]
    sizeless = check_camera_info("left", LEFT, 0, 480, k_of(320, 320, 320, 240), "left_optical_frame")
    assert len(sizeless) == 1 and "size is 0x480" in sizeless[0] and "cannot be checked" in sizeless[0]
    short = check_camera_info("left", LEFT, 640, 480, [320.0, 0.0, 320.0], "left_optical_frame")
    assert short == ["camera left: camera_info K has 3 elements, not the 9 of a row-major 3x3 matrix"]
    nan = check_camera_info("left", LEFT, 640, 480, k_of(float("nan"), 320, 320, 240), "left_optical_frame")
    assert len(nan) == 1 and "non-finite" in nan[0]
    # 640x360 (16:9) for a 4:3 bundle camera, same lens: the aspect line, then fy and cy scaled
    # by 480/360 follow from it.
    stretched = check_camera_info("left", LEFT, 640, 360, k_of(320, 320, 320, 180), "left_optical_frame")
    assert stretched[0] == (
        "camera left: camera_info size 640x360 (aspect 1.778) differs from the bundle's 640x480 "
        "(aspect 1.333): the images are stretched to the bundle's size, or another camera mode?"
    )
    assert [line.split()[3] for line in stretched[1:]] == ["fy"]
    empty_frame = check_camera_info("left", LEFT, 640, 480, k_of(320, 320, 320, 240), "")
    assert empty_frame == [
        "camera left: camera_info frame_id '' differs from the bundle's 'left_optical_frame': "
        "swapped topics or another TF naming?"
    ]


@pytest.mark.parametrize(
    ("image_topic", "info_topic"),
    [
        ("/front/image_raw", "/front/camera_info"),
        ("front/image_raw", "front/camera_info"),
        ("/front/image_raw/compressed", "/front/camera_info"),
        ("/robot/front/image_rect/theora", "/robot/front/camera_info"),
        ("image", "camera_info"),
        ("/image", "/camera_info"),
        ("~/image", "~/camera_info"),
        ("//front//image_raw/", "/front/camera_info"),
        ("compressed", "camera_info"),  # a base topic that happens to be called so
    ],
)
def test_camera_info_topic_is_the_image_topics_sibling(image_topic: str, info_topic: str) -> None:
    assert camera_info_topic(image_topic) == info_topic
