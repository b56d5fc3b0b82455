"""The localizer's parameters: validation at configure and for runtime changes (ROS-free)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pose_regressor.params import (
    FALLBACK_MAX_POSITION_STD,
    PARAMETERS,
    SPECS,
    Change,
    LocalizerParams,
    ParameterError,
    flag_threshold,
    inflation_in_force,
    validate_change,
    widened,
)


@pytest.fixture
def bundle_dir(tmp_path: Path) -> Path:
    (tmp_path / "model.onnx").write_bytes(b"\x08")
    return tmp_path


def test_a_valid_set_with_relative_and_absolute_topics(bundle_dir: Path) -> None:
    params = LocalizerParams.from_values(
        {"bundle": str(bundle_dir), "camera_topics": ["front/image_raw", "/rig/rear/image"], "odom_frame": ""}
    )
    assert params.camera_topics == ("front/image_raw", "/rig/rear/image")
    assert params.transport_for(1) == "raw" and params.mc_samples == 0 and params.odom_frame == ""
    # An empty YAML list (which ROS leaves untyped) means "the bundle's topics".
    assert LocalizerParams.from_values({"bundle": str(bundle_dir), "camera_topics": []}).camera_topics == ()


CASES: dict[str, tuple[dict[str, Any], str]] = {
    "bundle missing": ({"bundle": ""}, "'bundle' is required"),
    "bundle nowhere": ({"bundle": "{root}/nope"}, "nope does not exist"),
    "bundle is a file": ({"bundle": "{root}/model.onnx"}, "model.onnx is not a directory"),
    "bundle of an unknown user": (
        {"bundle": "~nosuchuser_pr/b"},
        "cannot expand '~nosuchuser_pr/b': no such user",
    ),
    "bundle with a NUL byte": ({"bundle": "{root}/a\x00b"}, "a\\x00b' does not exist"),
    "range": ({"mc_samples": -1}, "'mc_samples' must be in [0, 256]"),
    "type": ({"sync_slop": "fast"}, "'sync_slop' must be a number"),
    "not finite": ({"sync_slop": float("nan")}, "'sync_slop' must be in [0.0, 1.0]"),
    "choice": ({"backend": "cuda"}, "'backend' must be one of auto, tensorrt"),
    "covariance choice": ({"covariance_rotation": "euler"}, "must be one of fixed_axes, rpy"),
    "unknown": ({"sync": 1.0}, "unknown parameter(s) sync"),
    "transport count": (
        {"camera_topics": ["/a", "/b", "/c"], "image_transport": ["raw", "compressed"]},
        "give one or one per camera topic",
    ),
    "no transport": ({"image_transport": []}, "must name at least one transport"),
    "transport choice": ({"image_transport": ["theora"]}, "entries must be one of raw, compressed"),
    "topic with a space": ({"camera_topics": ["front image"]}, "is not a valid ROS topic name"),
    "topic starting with a digit": ({"camera_topics": ["1front"]}, "is not a valid ROS topic name"),
    "topic with //": ({"camera_topics": ["/a//b"]}, "is not a valid ROS topic name"),
    "empty map frame": ({"map_frame": ""}, "'map_frame' must be a frame name"),
    "frame with a space": ({"base_frame": "base link"}, "'base_frame' must be a frame name"),
    "missing value": ({"map_frame": None}, "'map_frame' must be a string, got None"),
    "bool for a number": ({"path_length": True}, "'path_length' must be a number"),
}


@pytest.mark.parametrize("case", CASES)
def test_each_bad_value_is_one_clear_line(case: str, bundle_dir: Path) -> None:
    changes, message = CASES[case]
    values = {"bundle": str(bundle_dir), **changes}
    values = {k: v.format(root=bundle_dir) if isinstance(v, str) else v for k, v in values.items()}
    with pytest.raises(ParameterError) as info:
        LocalizerParams.from_values(values)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_runtime_changes_are_validated_like_configure(bundle_dir: Path) -> None:
    current = {spec.name: spec.default for spec in PARAMETERS} | {"bundle": str(bundle_dir)}
    validate_change(current, {"mc_samples": 4, "map_frame": "odom2", "bundle": str(bundle_dir)})
    refused = {
        "mc_samples": (1000, "must be in [0, 256]"),
        "backend": ("nonsense", "must be one of"),
        "bundle": ("", "'bundle' is required"),
        "typo": (1, "unknown parameter 'typo'"),
        "camera_topics": (["a b"], "not a valid ROS topic name"),
    }
    for name, (value, message) in refused.items():
        with pytest.raises(ParameterError, match=message.replace("[", r"\[")):
            validate_change(current, {name: value})
    # The transport count is checked against the topics already set.
    with pytest.raises(ParameterError, match="give one or one per camera topic"):
        validate_change(current | {"camera_topics": ["/a", "/b", "/c"]}, {"image_transport": ["raw", "raw"]})


def test_every_parameter_says_when_it_may_change() -> None:
    structural = {name for name, spec in SPECS.items() if spec.change is Change.UNCONFIGURED}
    assert structural == {"bundle", "backend", "camera_topics", "image_transport", "publish_tf"}
    assert {name for name, spec in SPECS.items() if spec.change is Change.READ_ONLY} == {"autostart"}
    fields = set(LocalizerParams.__dataclass_fields__)
    assert fields == set(SPECS), "every parameter is a typed field and every field a parameter"


def test_flag_thresholds_come_from_the_parameter_then_the_bundle_then_the_fallback(bundle_dir: Path) -> None:
    params = LocalizerParams.from_values({"bundle": str(bundle_dir)})
    assert (params.max_position_std, params.max_rotation_std) == (0.0, 0.0)  # 0: not set
    assert flag_threshold(params.max_position_std, 0.17, FALLBACK_MAX_POSITION_STD) == (0.17, "the bundle's")
    assert flag_threshold(0.0, None, FALLBACK_MAX_POSITION_STD) == (1.0, "default")
    assert flag_threshold(0.5, 0.17, FALLBACK_MAX_POSITION_STD) == (0.5, "parameter")
    assert flag_threshold(1e6, 0.17, FALLBACK_MAX_POSITION_STD) == (1e6, "parameter")  # the flag off
    for name, value in [("max_rotation_std", -0.1), ("max_position_std", float("inf"))]:
        with pytest.raises(ParameterError, match=f"parameter '{name}' must be in"):
            LocalizerParams.from_values({"bundle": str(bundle_dir), name: value})


def test_covariance_inflation_is_the_parameter_or_for_0_the_bundles_suggestion(bundle_dir: Path) -> None:
    assert inflation_in_force(16.0, 15.2) == (16.0, "parameter")
    assert inflation_in_force(1.0, 15.2) == (1.0, "parameter")  # each pose's own covariance
    assert inflation_in_force(0.0, 15.2) == (15.2, "the bundle's")
    assert inflation_in_force(0.0, None) == (1.0, "default")
    for value in (0.0, 1.0, 16, 1e6):
        LocalizerParams.from_values({"bundle": str(bundle_dir), "covariance_inflation": value})
    # below 1 would shrink the calibrated covariance, an EKF's worst case; only 0 means "the bundle's"
    for value in (0.5, 1e-9, -1.0, 2e6, float("nan")):
        with pytest.raises(ParameterError, match="parameter 'covariance_inflation' must be"):
            validate_change({}, {"covariance_inflation": value})
    with pytest.raises(ParameterError) as info:
        validate_change({}, {"covariance_inflation": 0.5})
    assert str(info.value) == (
        "parameter 'covariance_inflation' must be 0 (the bundle's suggested inflation) or from 1 to "
        "1e+06, got 0.5"
    )


def test_an_integer_for_a_double_parameter_is_taken_as_that_double() -> None:
    doubles = [spec.name for spec in PARAMETERS if isinstance(spec.default, float)]
    assert {"sync_slop", "max_position_std", "max_rotation_std", "camera_timeout"} <= set(doubles)
    for name in doubles:
        value = widened(name, 0)
        assert type(value) is float and value == 0.0, name
    assert repr(widened("transform_tolerance", 2)) == "2.0"
    # Integer, bool, string and list parameters keep what they were given; so do wrong types,
    # which validation then refuses with one line.
    assert repr(widened("mc_samples", 3)) == "3" and repr(widened("mc_samples", 2.5)) == "2.5"
    assert widened("gate_uncertain", True) is True and widened("sync_slop", True) is True
    assert widened("sync_slop", "wide") == "wide" and widened("camera_topics", [1]) == [1]
    assert widened("map_frame", "map") == "map"
    assert widened("no_such_parameter", 1) == 1
    with pytest.raises(ParameterError, match="parameter 'sync_slop' must be a number, got 'wide'"):
        validate_change({}, {"sync_slop": widened("sync_slop", "wide")})


def test_one_string_for_a_list_parameter_is_a_list_of_it(bundle_dir: Path) -> None:
    # image_transport's convention: `-p image_transport:=compressed`, one string for the node
    assert widened("image_transport", "compressed") == ["compressed"]
    assert widened("camera_topics", "front/image_raw") == ["front/image_raw"]
    assert widened("image_transport", ["raw", "compressed"]) == ["raw", "compressed"]
    params = LocalizerParams.from_values(
        {"bundle": str(bundle_dir), "image_transport": widened("image_transport", "compressed")}
    )
    assert params.image_transport == ("compressed",) and params.transport_for(3) == "compressed"
    with pytest.raises(ParameterError, match="entries must be one of raw, compressed, got \\['theora'\\]"):
        validate_change({}, {"image_transport": widened("image_transport", "theora")})


def test_the_largest_flag_thresholds_a_parameter_takes_switch_their_check_off() -> None:
    """docs/node.md: max_position_std 10^6 m and max_rotation_std pi rad, the largest values the
    parameters take, switch that check off (`pipeline.uncertainty_reason`); so the descriptors'
    bounds and what the pipeline treats as "off" are one constant each."""
    import math

    from pose_regressor.limits import MAX_FLAG_POSITION_STD, MAX_FLAG_ROTATION_STD
    from pose_regressor.pipeline import flag_check_off

    assert SPECS["max_position_std"].max_value == MAX_FLAG_POSITION_STD == 1e6
    assert SPECS["max_rotation_std"].max_value == MAX_FLAG_ROTATION_STD == math.pi
    for name, largest in (("max_position_std", 1e6), ("max_rotation_std", math.pi)):
        validate_change({}, {name: largest})  # accepted
        assert flag_check_off(largest, largest) and flag_check_off(math.inf, largest)
        assert not flag_check_off(largest * 0.999, largest) and not flag_check_off(0.0, largest)
