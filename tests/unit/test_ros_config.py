"""The launch file, params file, RViz config and node agree on names (parameters and topics)."""

from __future__ import annotations

import ast
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

from pose_regressor.launch_support import namespaced_rviz_config, topic_list
from pose_regressor.params import PARAMETERS

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "ros2_ws" / "src" / "pose_regressor"


def test_params_file_has_exactly_the_node_parameters() -> None:
    data = yaml.safe_load((PACKAGE / "config" / "localize.yaml").read_text())
    assert list(data) == ["/**"], "the /**: key applies the file under any node name and namespace"
    params = data["/**"]["ros__parameters"]
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
        "image_transport",
        "autostart",
    ):
        assert argument in strings, argument
    assert {"pose_regressor", "localizer", "localize.yaml", "localize.rviz", "rviz2"} <= strings
    # Parameters the launch file sets directly must be node parameters (or ROS's use_sim_time).
    assert {"bundle", "camera_topics", "image_transport", "autostart"} <= {spec.name for spec in PARAMETERS}
    # launch_ros parses plain strings as YAML: the bundle path must go through a typed ParameterValue.
    assert 'ParameterValue(arg("bundle"), value_type=str)' in source
    # The package installs this very folder (one copy) plus config and rviz.
    assert (PACKAGE / "launch").resolve() == (ROOT / "launch").resolve()
    setup = (PACKAGE / "setup.py").read_text()
    assert (
        'glob("launch/*.launch.py")' in setup
        and 'glob("config/*.yaml")' in setup
        and 'glob("rviz/*.rviz")' in setup
    )
    # console.localizer imports the node itself, so that a SIGINT during its imports is one line
    assert "localizer = pose_regressor.console:localizer" in setup


def test_rviz_shows_the_node_outputs_in_the_map_frame_under_any_namespace() -> None:
    text = (PACKAGE / "rviz" / "localize.rviz").read_text()
    for namespace, prefix in (("", ""), ("robot1", "/robot1"), ("/fleet/robot1/", "/fleet/robot1")):
        rviz = yaml.safe_load(namespaced_rviz_config(text, namespace))
        manager = rviz["Visualization Manager"]
        assert manager["Global Options"]["Fixed Frame"] == "map"
        displays = {d["Class"]: d for d in manager["Displays"]}
        pose = displays["rviz_default_plugins/PoseWithCovariance"]
        assert pose["Topic"]["Value"] == f"{prefix}/localizer/pose_with_covariance"
        assert pose["Covariance"]["Value"] is True
        assert displays["rviz_default_plugins/Path"]["Topic"]["Value"] == f"{prefix}/localizer/path"
        assert {"rviz_default_plugins/Grid", "rviz_default_plugins/TF"} <= set(displays)
        images = [
            d["Topic"]["Value"] for d in manager["Displays"] if d["Class"] == "rviz_default_plugins/Image"
        ]
        assert images == [f"{prefix}/{c}/image_raw" for c in ("front", "left", "back", "right")]


def test_launch_support_parses_topic_lists() -> None:
    assert topic_list("[front/image_raw, /left/image_raw]") == ["front/image_raw", "/left/image_raw"]
    assert topic_list("'a','b'") == ["a", "b"] and topic_list("") == [] and topic_list("[]") == []
    assert topic_list("compressed") == ["compressed"]  # image_transport:=compressed


def test_node_publishes_the_topics_rviz_and_the_ekf_sample_use() -> None:
    node_source = (PACKAGE / "pose_regressor" / "node.py").read_text()
    for topic in ("~/pose", "~/pose_with_covariance", "~/path", "/diagnostics", "initialpose"):
        assert f'"{topic}"' in node_source, topic
    ekf = yaml.safe_load((PACKAGE / "config" / "ekf_map.yaml").read_text())
    assert ekf["ekf_filter_node_map"]["ros__parameters"]["pose0"] == "/localizer/pose_with_covariance"


def _imported_ros_packages() -> set[str]:
    """Top-level ROS packages that the robot package and the launch file import."""
    sources = [*(PACKAGE / "pose_regressor").rglob("*.py"), ROOT / "launch" / "localize.launch.py"]
    found = set()
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            found |= {name.split(".")[0] for name in names}
    ros = {"rclpy", "launch", "launch_ros", "ament_index_python", "builtin_interfaces", "rcl_interfaces"}
    return {name for name in found if name in ros or name.endswith("_msgs")}


def test_package_xml_lists_exactly_the_ros_packages_the_code_imports() -> None:
    root = ET.parse(PACKAGE / "package.xml").getroot()
    depends = {element.text for element in root.iter("exec_depend")}
    ros_depends = {name for name in depends if name and not name.startswith("python3-")}
    assert ros_depends == _imported_ros_packages()
