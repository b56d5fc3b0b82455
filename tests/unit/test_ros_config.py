"""The launch file, params file, RViz config and node agree on names (parameters and topics)."""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

from pose_regressor.params import PARAMETERS

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "ros2_ws" / "src" / "pose_regressor"


def test_params_file_has_exactly_the_node_parameters() -> None:
    data = yaml.safe_load((PACKAGE / "config" / "localize.yaml").read_text())
    assert list(data) == ["localizer"]
    params = data["localizer"]["ros__parameters"]
    assert set(params) == {spec.name for spec in PARAMETERS}
    for spec in PARAMETERS:
        assert type(params[spec.name]) is type(spec.default), spec.name


def test_launch_file_names_the_node_its_arguments_and_installed_files() -> None:
    source = (ROOT / "launch" / "localize.launch.py").read_text()
    tree = ast.parse(source)
    strings = {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }
    for argument in (
        "bundle",
        "params_file",
        "namespace",
        "use_sim_time",
        "log_level",
        "rviz",
        "camera_topics",
    ):
        assert argument in strings, argument
    assert {"pose_regressor", "localizer", "localize.yaml", "localize.rviz", "rviz2"} <= strings
    # Parameters the launch file sets directly must be node parameters (or ROS's use_sim_time).
    assert {"bundle", "camera_topics"} <= {spec.name for spec in PARAMETERS}
    # The package installs this very folder (one copy) plus config and rviz.
    assert (PACKAGE / "launch").resolve() == (ROOT / "launch").resolve()
    setup = (PACKAGE / "setup.py").read_text()
    assert (
        'glob("launch/*.launch.py")' in setup
        and 'glob("config/*.yaml")' in setup
        and 'glob("rviz/*.rviz")' in setup
    )
    assert "localizer = pose_regressor.node:main" in setup


def test_rviz_shows_the_node_outputs_in_the_map_frame() -> None:
    rviz = yaml.safe_load((PACKAGE / "rviz" / "localize.rviz").read_text())
    manager = rviz["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == "map"
    displays = {d["Class"]: d for d in manager["Displays"]}
    assert (
        displays["rviz_default_plugins/PoseWithCovariance"]["Topic"]["Value"]
        == "/localizer/pose_with_covariance"
    )
    assert displays["rviz_default_plugins/PoseWithCovariance"]["Covariance"]["Value"] is True
    assert displays["rviz_default_plugins/Path"]["Topic"]["Value"] == "/localizer/path"
    assert "rviz_default_plugins/Grid" in displays
    images = [d["Topic"]["Value"] for d in manager["Displays"] if d["Class"] == "rviz_default_plugins/Image"]
    assert images == [f"/{c}/image_raw" for c in ("front", "left", "back", "right")]


def test_node_publishes_the_topics_rviz_and_the_ekf_sample_use() -> None:
    node_source = (PACKAGE / "pose_regressor" / "node.py").read_text()
    for topic in ("~/pose", "~/pose_with_covariance", "~/path", "/diagnostics", "/initialpose"):
        assert f'"{topic}"' in node_source, topic
    ekf = yaml.safe_load((PACKAGE / "config" / "ekf_map.yaml").read_text())
    assert ekf["ekf_filter_node_map"]["ros__parameters"]["pose0"] == "/localizer/pose_with_covariance"
