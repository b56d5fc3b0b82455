"""`pose_regressor.bundle`: bundle.yaml round trip, every BundleError, and THE preprocessing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml

from pose_regressor.bundle import (
    ONNX_FILE,
    PREPROCESSING,
    SCHEMA_VERSION,
    YAML_FILE,
    BundleError,
    ModelBundle,
    UncertainFlag,
    load_bundle,
    preprocess,
    write_bundle,
)
from pose_regressor_training.data.dataset import read_image_rgb
from tests.unit.bundle_fixtures import CAMERA_SIZE, INPUT_SIZE, make_bundle

Mutation = Callable[[dict[str, Any]], None]


@pytest.fixture
def bundle(tmp_path: Path) -> ModelBundle:
    return make_bundle(tmp_path / "bundle")


def _edit_yaml(bundle: ModelBundle, mutate: Mutation) -> None:
    data = yaml.safe_load(bundle.yaml_path.read_text())
    mutate(data)
    bundle.yaml_path.write_text(yaml.safe_dump(data))


# ------------------------------------------------------------------------------------ round trip
def test_round_trip_keeps_every_field(bundle: ModelBundle) -> None:
    loaded = load_bundle(bundle.path)
    assert loaded == bundle
    assert SCHEMA_VERSION == 1 and loaded.schema_version == 1
    assert loaded.camera_names == ["front", "rear"]
    assert loaded.cameras[1].topic == "/rear/image_raw" and loaded.cameras[1].width == CAMERA_SIZE[0]
    assert loaded.onnx_path == bundle.path / "model.onnx"
    assert loaded.engines_dir == bundle.path / "engines"
    assert loaded.images_shape == (2, INPUT_SIZE[1], INPUT_SIZE[0], 3)
    assert loaded.preprocessing == PREPROCESSING and "INTER_AREA" in loaded.preprocessing["resize"]


def test_write_is_atomic_and_yaml_is_plain(bundle: ModelBundle) -> None:
    data = yaml.safe_load(bundle.yaml_path.read_text())
    assert data["format"] == "pose_regressor_bundle" and data["schema_version"] == 1
    assert data["model"] == {"fusion": "input", "dof": 6, "dropout": 0.25, "hidden_dim": 4, "mc_samples": 8}
    assert sorted(p.name for p in bundle.path.iterdir()) == [YAML_FILE, ONNX_FILE]  # no temporary left
    # numpy scalars and str subclasses in provenance are written as plain YAML.
    odd = ModelBundle(
        **{**bundle.__dict__, "provenance": {"x": np.float32(1.5), "v": type("V", (str,), {})("2")}}
    )
    write_bundle(odd)
    assert load_bundle(bundle.path).provenance == {"x": 1.5, "v": "2"}


def test_uncertain_flag_round_trip_and_absence(tmp_path: Path) -> None:
    flagged = make_bundle(tmp_path / "flagged", uncertain_flag=UncertainFlag(0.17, 0.036))
    data = yaml.safe_load(flagged.yaml_path.read_text())
    assert data["uncertain_flag"] == {"max_position_std": 0.17, "max_rotation_std": 0.036}
    assert load_bundle(flagged.path).uncertain_flag == UncertainFlag(0.17, 0.036)
    # a bundle exported without suggestions has no key at all, and loads as before
    plain = make_bundle(tmp_path / "plain")
    assert "uncertain_flag" not in yaml.safe_load(plain.yaml_path.read_text())
    assert load_bundle(plain.path).uncertain_flag is None


def test_write_needs_an_existing_directory(bundle: ModelBundle, tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="does not exist"):
        write_bundle(ModelBundle(**{**bundle.__dict__, "path": tmp_path / "nowhere"}))


# ---------------------------------------------------------------------------------------- errors
def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=r"model bundle .*nope does not exist"):
        load_bundle(tmp_path / "nope")


def test_path_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(BundleError, match="is not a directory"):
        load_bundle(tmp_path / "file")


def test_missing_yaml(bundle: ModelBundle) -> None:
    bundle.yaml_path.unlink()
    with pytest.raises(BundleError, match=r"has no bundle.yaml: not a model bundle"):
        load_bundle(bundle.path)


def test_missing_onnx(bundle: ModelBundle) -> None:
    bundle.onnx_path.unlink()
    with pytest.raises(BundleError, match=r"has no model.onnx"):
        load_bundle(bundle.path)


def test_empty_onnx(bundle: ModelBundle) -> None:
    bundle.onnx_path.write_bytes(b"")
    with pytest.raises(BundleError, match=r"model.onnx is empty"):
        load_bundle(bundle.path)


def test_truncated_onnx(bundle: ModelBundle) -> None:
    data = bundle.onnx_path.read_bytes()
    bundle.onnx_path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError, match=r"has \d+ bytes, bundle.yaml records \d+: truncated"):
        load_bundle(bundle.path)


def test_onnx_with_a_foreign_header(bundle: ModelBundle) -> None:
    _edit_yaml(bundle, lambda d: d["onnx"].pop("bytes"))
    bundle.onnx_path.write_bytes(b"PK\x03\x04 a zip file, not a graph")
    with pytest.raises(BundleError, match=r"not an ONNX model \(unexpected header byte 0x50\)"):
        load_bundle(bundle.path)


def test_invalid_yaml(bundle: ModelBundle) -> None:
    bundle.yaml_path.write_text("cameras: [unclosed\n")
    with pytest.raises(BundleError, match="is not valid YAML"):
        load_bundle(bundle.path)


def test_yaml_not_a_mapping(bundle: ModelBundle) -> None:
    bundle.yaml_path.write_text("- 1\n- 2\n")
    with pytest.raises(BundleError, match="must hold a mapping, got list"):
        load_bundle(bundle.path)


@pytest.mark.parametrize("version", [2, 0, None, "1", True])
def test_other_schema_version(bundle: ModelBundle, version: object) -> None:
    _edit_yaml(bundle, lambda d: d.update(schema_version=version))
    with pytest.raises(BundleError, match=rf"schema version {version!r} is not supported .* reads version 1"):
        load_bundle(bundle.path)


def test_other_format(bundle: ModelBundle) -> None:
    _edit_yaml(bundle, lambda d: d.update(format="something_else"))
    with pytest.raises(BundleError, match="format is 'something_else'"):
        load_bundle(bundle.path)


def _set(path: str, value: object) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node: Any = data
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if isinstance(node, list):
            node[int(leaf)] = value
        else:
            node[leaf] = value

    return mutate


def _delete(path: str) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node: Any = data
        for key in parents:
            node = node[key]
        del node[leaf]

    return mutate


BAD_VALUES: dict[str, tuple[Mutation, str]] = {
    "no cameras": (_set("cameras", []), r"cameras must be a non-empty list"),
    "cameras not a list": (_set("cameras", "front"), r"cameras must be a non-empty list"),
    "camera not a mapping": (_set("cameras.0", "front"), r"cameras\[0\] must be a mapping"),
    "camera without name": (_set("cameras.0.name", ""), r"cameras\[0\]\.name must be a non-empty string"),
    "camera name with slash": (_set("cameras.1.name", "a/b"), r"cameras\[1\]\.name .* without '/'"),
    "duplicate camera": (_set("cameras.1.name", "front"), r"camera names must be unique"),
    "relative topic": (
        _set("cameras.0.topic", "front/image_raw"),
        r"cameras\[0\]\.topic must be an absolute",
    ),
    "zero width": (_set("cameras.0.width", 0), r"cameras\[0\]\.width must be in \[1, 16384\], got 0"),
    "string height": (_set("cameras.1.height", "12"), r"cameras\[1\]\.height must be an integer, got '12'"),
    "bool width": (_set("cameras.0.width", True), r"cameras\[0\]\.width must be an integer, got True"),
    "no input": (_delete("input"), r"input must be a mapping"),
    "input width": (_set("input.width", -8), r"input.width must be in \[1, 4096\], got -8"),
    "preprocessing": (_set("preprocessing", {"resize": 3}), r"preprocessing must map names to strings"),
    "no model": (_delete("model"), r"model must be a mapping"),
    "fusion": (
        _set("model.fusion", "early"),
        r"model.fusion must be one of input, mosaic, late, got 'early'",
    ),
    "dof": (_set("model.dof", 4), r"model.dof must be 6 or 3, got 4"),
    "dropout 1": (_set("model.dropout", 1.0), r"model.dropout must be in \[0.0, 1.0\), got 1.0"),
    "dropout text": (_set("model.dropout", "0.2"), r"model.dropout must be a finite number"),
    "hidden_dim": (_set("model.hidden_dim", 0), r"model.hidden_dim must be in \[1, 16384\], got 0"),
    "mc_samples": (_set("model.mc_samples", 0), r"model.mc_samples must be in \[1, 256\], got 0"),
    "scale zero": (_set("covariance_scale", 0.0), r"covariance_scale must be in \(0.0, 1e\+06\], got 0.0"),
    "scale nan": (
        _set("covariance_scale", float("nan")),
        r"covariance_scale must be in \(0.0, 1e\+06\], got nan",
    ),
    "scale missing": (_delete("covariance_scale"), r"covariance_scale must be a finite number, got None"),
    "group scale zero": (
        _set("covariance_scale", {"position": 2.0, "rotation": 0.0}),
        r"covariance_scale.rotation must be in \(0.0, 1e\+06\], got 0.0$",
    ),
    "group scale text": (
        _set("covariance_scale", {"position": "2", "rotation": 1.0}),
        r"covariance_scale.position must be a finite number, got '2'$",
    ),
    "group scale keys": (
        _set("covariance_scale", {"position": 2.0, "yaw": 1.0}),
        r"covariance_scale must map position and rotation \(and optionally <group>_exponent and "
        r"<group>_reference_std\) to numbers, got keys \['position', 'yaw'\]$",
    ),
    "exponent without reference": (
        _set("covariance_scale", {"position": 2.0, "rotation": 1.0, "rotation_exponent": 2.0}),
        r"covariance_scale needs both rotation_exponent and rotation_reference_std, or neither$",
    ),
    "exponent below 1": (
        _set(
            "covariance_scale",
            {"position": 2.0, "rotation": 1.0, "position_exponent": 0.5, "position_reference_std": 0.1},
        ),
        r"covariance_scale.position_exponent must be in \[1.0, 4.0\], got 0.5$",
    ),
    "exponent text": (
        _set(
            "covariance_scale",
            {"position": 2.0, "rotation": 1.0, "position_exponent": "2", "position_reference_std": 0.1},
        ),
        r"covariance_scale.position_exponent must be a finite number, got '2'$",
    ),
    "reference rotation above pi": (
        _set(
            "covariance_scale",
            {"position": 2.0, "rotation": 1.0, "rotation_exponent": 2.0, "rotation_reference_std": 4.0},
        ),
        r"covariance_scale.rotation_reference_std must be in \(0.0, 3.14159\d*\], got 4.0$",
    ),
    "variance_head text": (
        _set("model.variance_head", "yes"),
        r"model.variance_head must be true or false, got 'yes'$",
    ),
    "provenance": (_set("provenance", [1]), r"onnx and provenance must be mappings"),
    "flag position zero": (
        _set("uncertain_flag", {"max_position_std": 0.0, "max_rotation_std": 0.1}),
        r"uncertain_flag.max_position_std must be in \(0.0, 1e\+06\], got 0.0$",
    ),
    "flag rotation above pi": (
        _set("uncertain_flag", {"max_position_std": 0.2, "max_rotation_std": 4.0}),
        r"uncertain_flag.max_rotation_std must be in \(0.0, 3.14159\d*\], got 4.0$",
    ),
    "flag nan": (
        _set("uncertain_flag", {"max_position_std": float("nan"), "max_rotation_std": 0.1}),
        r"uncertain_flag.max_position_std must be in .*, got nan$",
    ),
    "flag text": (
        _set("uncertain_flag", {"max_position_std": "0.2", "max_rotation_std": 0.1}),
        r"uncertain_flag.max_position_std must be a finite number, got '0.2'$",
    ),
    "flag text of 100 KB": (  # the value is shortened in the line, not printed whole
        _set("uncertain_flag", {"max_position_std": "7" * 100_000, "max_rotation_std": 0.1}),
        r"uncertain_flag.max_position_std must be a finite number, got '7{27}\.\.\.7{28}'$",
    ),
    "flag keys": (
        _set("uncertain_flag", {"max_position_std": 0.2}),
        r"uncertain_flag must be a mapping of exactly max_position_std and max_rotation_std, "
        r"got \['max_position_std'\]$",
    ),
    "flag not a mapping": (
        _set("uncertain_flag", 0.2),
        r"uncertain_flag must be a mapping of exactly max_position_std and max_rotation_std, got 0.2$",
    ),
    "flag empty": (
        _set("uncertain_flag", None),
        r"uncertain_flag must be a mapping .*, got None$",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_bad_values(bundle: ModelBundle, case: str) -> None:
    mutate, message = BAD_VALUES[case]
    _edit_yaml(bundle, mutate)
    with pytest.raises(BundleError, match=message) as info:
        load_bundle(bundle.path)
    assert str(info.value).startswith(str(bundle.yaml_path))  # names the file


@pytest.mark.parametrize(
    "name", ["../../etc/passwd", "/etc/passwd", "sub/../../model.onnx", "..\\model.onnx", "../model.onnx"]
)
def test_model_file_outside_the_bundle_is_refused(bundle: ModelBundle, name: str) -> None:
    _edit_yaml(bundle, _set("onnx.file", name))
    with pytest.raises(BundleError, match=r"onnx.file .* points outside the bundle directory") as info:
        load_bundle(bundle.path)
    assert str(info.value).startswith(str(bundle.yaml_path)) and "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["other.onnx", "sub/model.onnx", "", 3])
def test_model_file_must_be_model_onnx(bundle: ModelBundle, name: object) -> None:
    _edit_yaml(bundle, _set("onnx.file", name))
    message = r"onnx.file (is .*keep the model in model.onnx|must be a file name)"
    with pytest.raises(BundleError, match=message):
        load_bundle(bundle.path)


def test_model_file_may_be_named_explicitly_or_left_out(bundle: ModelBundle) -> None:
    _edit_yaml(bundle, _set("onnx.file", "./model.onnx"))
    assert load_bundle(bundle.path).onnx["file"] == "./model.onnx"
    _edit_yaml(bundle, _delete("onnx.file"))
    assert "file" not in load_bundle(bundle.path).onnx


# ---------------------------------------------------------------------------------- preprocessing
def _images(sizes: list[tuple[int, int]], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for w, h in sizes]


@pytest.mark.parametrize(
    "sizes", [[CAMERA_SIZE, CAMERA_SIZE], [INPUT_SIZE, INPUT_SIZE], [(5, 4), (33, 7)]], ids=str
)
def test_preprocess_shape_and_interpolation(bundle: ModelBundle, sizes: list[tuple[int, int]]) -> None:
    images = _images(sizes)
    out = preprocess(images, bundle)
    assert (
        out.shape == (2, INPUT_SIZE[1], INPUT_SIZE[0], 3) and out.dtype == np.uint8 and out.flags.c_contiguous
    )
    for k, image in enumerate(images):
        if image.shape[:2] == (INPUT_SIZE[1], INPUT_SIZE[0]):
            np.testing.assert_array_equal(out[k], image)
            assert not np.shares_memory(out[k], image)
        else:
            np.testing.assert_array_equal(out[k], cv2.resize(image, INPUT_SIZE, interpolation=cv2.INTER_AREA))


@pytest.mark.parametrize("size", [(16, 12), (37, 23), (5, 3)], ids=str)
def test_preprocess_equals_training_read_image_rgb(
    bundle: ModelBundle, tmp_path: Path, size: tuple[int, int]
) -> None:
    """A PNG decoded to RGB as the robot would (image_decode) and preprocessed gives exactly the
    pixels training loads with read_image_rgb at the model's size (shrinking and enlarging)."""
    paths, decoded = [], []
    for k, rgb in enumerate(_images([size, size], seed=3)):
        path = tmp_path / f"cam{k}.png"
        cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        paths.append(path)
        decoded.append(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB))
    robot = preprocess(decoded, bundle)
    training = np.stack([read_image_rgb(p, INPUT_SIZE) for p in paths])
    np.testing.assert_array_equal(robot, training)


def test_preprocess_fills_out(bundle: ModelBundle) -> None:
    out = np.zeros(bundle.images_shape, dtype=np.uint8)
    result = preprocess(_images([CAMERA_SIZE, CAMERA_SIZE]), bundle, out=out)
    assert result is out and out.any()
    with pytest.raises(ValueError, match=r"out must be a C-contiguous uint8 array of shape \(2, 6, 8, 3\)"):
        preprocess(_images([CAMERA_SIZE, CAMERA_SIZE]), bundle, out=np.zeros((2, 6, 8, 3), np.float32))


def test_preprocess_rejects_wrong_camera_count(bundle: ModelBundle) -> None:
    with pytest.raises(ValueError, match=r"expected 2 images \(cameras front, rear\), got 1"):
        preprocess(_images([CAMERA_SIZE]), bundle)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((12, 16, 3), np.float32), r"camera 'rear' must be a uint8 array, got float32"),
        (np.zeros((12, 16), np.uint8), r"camera 'rear' must be RGB \(h, w, 3\), got shape \(12, 16\)"),
        (np.zeros((12, 16, 4), np.uint8), r"must be RGB \(h, w, 3\), got shape \(12, 16, 4\)"),
        (np.zeros((0, 16, 3), np.uint8), r"must be RGB \(h, w, 3\), got shape \(0, 16, 3\)"),
        ([[0]], r"camera 'rear' must be a uint8 array, got list"),
    ],
    ids=["float", "grey", "rgba", "empty", "list"],
)
def test_preprocess_rejects_bad_images(bundle: ModelBundle, image: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        preprocess([np.zeros((12, 16, 3), np.uint8), image], bundle)


def test_a_bundle_trained_without_a_metric_scale_says_so(tmp_path: Path, bundle: ModelBundle) -> None:
    loaded = load_bundle(bundle.path)
    assert loaded.length_unit == "m" and loaded.units_warning() is None  # no length_unit: metres
    dataset = {"kind": "folder", "root": "/data/fox", "length_unit": "units"}
    unscaled = load_bundle(make_bundle(tmp_path / "unscaled", provenance={"dataset": dataset}).path)
    assert unscaled.length_unit == "units"
    assert unscaled.units_warning() == (
        f"bundle {tmp_path / 'unscaled'} was trained on positions in its input's own units, not metres "
        "(an import without --scale); ROS and everything downstream (robot_localization, Nav2, tf2) read "
        "them as metres: re-import with --scale or --scale-from, retrain and export"
    )
    metric = make_bundle(tmp_path / "metric", provenance={"dataset": {**dataset, "length_unit": "m"}})
    assert load_bundle(metric.path).units_warning() is None


def test_the_evaluations_error_correlation_is_one_line_for_export_and_the_node() -> None:
    from pose_regressor.bundle import inflation_line

    found = {"frames": 15.2, "seconds": 1.52, "truncated": True, "suggested_covariance_inflation": 15.2}
    assert inflation_line({"eval_metrics": {"error_correlation": found}}) == (
        "successive poses err alike over at least 1.52 s (the evaluation's error_correlation): an EKF "
        "fusing every pose at the evaluated rate needs covariance_inflation 15.2 or more"
    )
    whole = {**found, "truncated": False, "suggested_covariance_inflation": 9.0}
    assert inflation_line({"eval_metrics": {"error_correlation": whole}}).endswith("covariance_inflation 9")
    # bundles exported before it, or by hand, have none
    for provenance in ({}, {"eval_metrics": {}}, {"eval_metrics": {"error_correlation": {"frames": None}}}):
        assert inflation_line(provenance) is None


def test_the_suggested_inflation_is_what_the_node_takes_for_covariance_inflation_0() -> None:
    from pose_regressor.bundle import inflation_line, inflation_problem, suggested_inflation

    def provenance(value: object) -> dict[str, object]:
        return {
            "eval_metrics": {"error_correlation": {"seconds": 1.5, "suggested_covariance_inflation": value}}
        }

    assert suggested_inflation(provenance(15.2)) == 15.2
    assert suggested_inflation(provenance(1)) == 1.0
    # none from a bundle without one, and none the node's parameter would refuse (a hand-edited bundle)
    for bad in ("16", 0.5, float("nan"), float("inf"), 2e6, [15.2], True):
        assert suggested_inflation(provenance(bad)) is None and inflation_line(provenance(bad)) is None
        # named, so that the node does not say the bundle has none (a hand-edited bundle)
        assert inflation_problem(provenance(bad)) == (
            f"its suggested_covariance_inflation {bad!r} is not a number from 1 to 1e+06"
        )
    assert suggested_inflation(provenance(None)) is None and inflation_problem(provenance(None)) is None
    for nothing in ({}, {"eval_metrics": None}, {"eval_metrics": [1]}, {"eval_metrics": "x"}):
        assert suggested_inflation(nothing) is None and inflation_problem(nothing) is None
    assert inflation_problem({"eval_metrics": {"error_correlation": [4.0]}}) == (
        "its error_correlation is a list, not a mapping"
    )
