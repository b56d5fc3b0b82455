"""Starts the pose_regressor localizer (and optionally RViz).

    ros2 launch pose_regressor localize.launch.py bundle:=/path/to/bundle
        [params_file:=...] [namespace:=...] [use_sim_time:=true] [log_level:=info] [rviz:=true]
        [camera_topics:="[/front/image_raw,/left/image_raw]"]

Where `launch` is not installed, `pose-regressor run --params config/localize.yaml --bundle ...`
runs the same node with the same parameters.
"""

from __future__ import annotations

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "pose_regressor"


def _localizer(context, *args, **kwargs):  # type: ignore[no-untyped-def]
    overrides: dict[str, object] = {
        "use_sim_time": LaunchConfiguration("use_sim_time").perform(context) == "true"
    }
    bundle = LaunchConfiguration("bundle").perform(context)
    if bundle:
        overrides["bundle"] = bundle
    topics = LaunchConfiguration("camera_topics").perform(context).strip()
    if topics:
        overrides["camera_topics"] = [t.strip() for t in topics.strip("[]").split(",") if t.strip()]
    return [
        Node(
            package=PACKAGE,
            executable="localizer",
            name="localizer",
            namespace=LaunchConfiguration("namespace"),
            parameters=[LaunchConfiguration("params_file"), overrides],
            arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")],
            output="screen",
        )
    ]


def generate_launch_description() -> LaunchDescription:
    share = Path(get_package_share_directory(PACKAGE))
    return LaunchDescription(
        [
            DeclareLaunchArgument("bundle", default_value="", description="model bundle directory"),
            DeclareLaunchArgument(
                "params_file",
                default_value=str(share / "config" / "localize.yaml"),
                description="node parameters",
            ),
            DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
            DeclareLaunchArgument("use_sim_time", default_value="false", description="follow /clock"),
            DeclareLaunchArgument("log_level", default_value="info", description="debug, info, warn, error"),
            DeclareLaunchArgument("rviz", default_value="false", description="also start RViz"),
            DeclareLaunchArgument(
                "camera_topics",
                default_value="",
                description="override, e.g. [/front/image_raw,/left/image_raw]",
            ),
            OpaqueFunction(function=_localizer),
            Node(
                package="rviz2",
                executable="rviz2",
                name="rviz",
                arguments=["-d", str(share / "rviz" / "localize.rviz")],
                parameters=[{"use_sim_time": LaunchConfiguration("use_sim_time")}],
                condition=IfCondition(LaunchConfiguration("rviz")),
                output="screen",
            ),
        ]
    )
