"""Starts the pose_regressor localizer (and optionally RViz).

    ros2 launch pose_regressor localize.launch.py bundle:=/path/to/bundle
        [params_file:=...] [namespace:=robot1] [use_sim_time:=true] [log_level:=info] [rviz:=true]
        [autostart:=false] [camera_topics:="[front/image_raw,left/image_raw]"]
        [image_transport:=compressed]

Leave an argument out for its default (`ros2 launch` refuses an empty `name:=`). The shipped
params file uses the `/**:` key, so it applies under any `namespace`; relative camera
topics (the default) resolve in that namespace. `autostart:=false` leaves the transitions to a
lifecycle manager (docs/node.md: "Lifecycle and Nav2"). Where `launch` is not installed,
`pose-regressor run --params config/localize.yaml --bundle ...` runs the same node with the same
parameters.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import List  # noqa: UP035  launch's type_utils knows typing.List, not list[str]

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from pose_regressor.launch_support import namespaced_rviz_config, topic_list

PACKAGE = "pose_regressor"


def _nodes(context, *args, **kwargs):  # type: ignore[no-untyped-def]
    def arg(name: str) -> str:
        value = LaunchConfiguration(name).perform(context)
        # `ros2 launch` refuses `name:=` (empty): a quoted empty string is how users spell it.
        return "" if value in ("''", '""') else value

    use_sim_time = arg("use_sim_time").lower() == "true"
    overrides: dict[str, object] = {
        "use_sim_time": use_sim_time,
        "autostart": arg("autostart").lower() == "true",
    }
    # launch_ros parses plain string values as YAML: a path like "models #1" or "on" must be typed.
    if arg("bundle"):
        overrides["bundle"] = ParameterValue(arg("bundle"), value_type=str)
    topics = topic_list(arg("camera_topics"))
    if topics:
        overrides["camera_topics"] = ParameterValue(topics, value_type=List[str])  # noqa: UP006
    transports = topic_list(arg("image_transport"))  # "compressed" or "[raw,compressed]"
    if transports:
        overrides["image_transport"] = ParameterValue(transports, value_type=List[str])  # noqa: UP006
    namespace = arg("namespace")
    nodes = [
        Node(
            package=PACKAGE,
            executable="localizer",
            name="localizer",
            namespace=namespace,
            parameters=[arg("params_file"), overrides],
            arguments=["--ros-args", "--log-level", arg("log_level")],
            output="screen",
        )
    ]
    if arg("rviz").lower() == "true":
        share = Path(get_package_share_directory(PACKAGE))
        text = namespaced_rviz_config((share / "rviz" / "localize.rviz").read_text(), namespace)
        with tempfile.NamedTemporaryFile("w", suffix=".rviz", prefix="localize_", delete=False) as rviz:
            rviz.write(text)
        nodes.append(
            Node(
                package="rviz2",
                executable="rviz2",
                name="rviz",
                namespace=namespace,
                arguments=["-d", rviz.name],
                parameters=[{"use_sim_time": use_sim_time}],
                output="screen",
            )
        )
    return nodes


def generate_launch_description() -> LaunchDescription:
    share = Path(get_package_share_directory(PACKAGE))
    return LaunchDescription(
        [
            DeclareLaunchArgument("bundle", default_value="", description="model bundle directory"),
            DeclareLaunchArgument(
                "params_file",
                default_value=str(share / "config" / "localize.yaml"),
                description="node parameters (the /**: key applies under any namespace)",
            ),
            DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
            DeclareLaunchArgument("use_sim_time", default_value="false", description="follow /clock"),
            DeclareLaunchArgument(
                "autostart",
                default_value="true",
                description="configure and activate at start (false: a lifecycle manager does)",
            ),
            DeclareLaunchArgument("log_level", default_value="info", description="debug, info, warn, error"),
            DeclareLaunchArgument("rviz", default_value="false", description="also start RViz"),
            DeclareLaunchArgument(
                "camera_topics",
                default_value="",
                description="override, e.g. [front/image_raw,left/image_raw] (relative: in the namespace)",
            ),
            DeclareLaunchArgument(
                "image_transport",
                default_value="",
                description="override: raw or compressed for every camera, or [raw,compressed] per topic",
            ),
            OpaqueFunction(function=_nodes),
        ]
    )
