"""tf2_msgs (built by `make setup`, scripts/build_tf2_msgs.sh) works: a separate process publishes a
TFMessage on /tf and this process receives it over Fast DDS with the same values and the type hash
of the distro's tf2_msgs/msg/TFMessage."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rosbags.typesys import Stores, get_typestore
from tf2_msgs.msg import TFMessage

pytestmark = pytest.mark.ros

PUBLISHER = textwrap.dedent(
    """
    import sys, time
    import rclpy
    from geometry_msgs.msg import TransformStamped
    from tf2_msgs.msg import TFMessage

    rclpy.init()
    node = rclpy.create_node("tf2_msgs_publisher")
    pub = node.create_publisher(TFMessage, "/tf", 100)  # reliable, as tf2_ros publishes /tf
    t = TransformStamped()
    t.header.stamp.sec, t.header.stamp.nanosec = 1700000000, 123456789
    t.header.frame_id, t.child_frame_id = "map", "camera_front"
    t.transform.translation.x, t.transform.translation.y, t.transform.translation.z = 1.5, -2.25, 0.75
    r = t.transform.rotation
    r.x, r.y, r.z, r.w = 0.0, 0.0, 0.6, 0.8
    deadline = time.monotonic() + float(sys.argv[1])
    while time.monotonic() < deadline:
        pub.publish(TFMessage(transforms=[t]))
        time.sleep(0.1)
    node.destroy_node()
    rclpy.shutdown()
    """
)


def test_tf_message_crosses_processes_over_fast_dds(ros_env: dict[str, str]) -> None:
    publisher = subprocess.Popen(
        [sys.executable, "-c", PUBLISHER, "40"],
        env=ros_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    context = Context()
    rclpy.init(context=context)
    received: list[TFMessage] = []
    try:
        node = rclpy.create_node("tf2_msgs_receiver", context=context)
        node.create_subscription(TFMessage, "/tf", received.append, 100)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        deadline = time.monotonic() + 30
        while not received and time.monotonic() < deadline and publisher.poll() is None:
            executor.spin_once(timeout_sec=0.1)
        endpoints = node.get_publishers_info_by_topic("/tf")
        executor.shutdown()
        node.destroy_node()  # type: ignore[no-untyped-call]
    finally:
        rclpy.shutdown(context=context)
        publisher.terminate()
        _, err = publisher.communicate(timeout=10)
    assert received, f"no TFMessage arrived on /tf; publisher stderr: {err}"

    (t,) = received[0].transforms
    assert (t.header.stamp.sec, t.header.stamp.nanosec) == (1700000000, 123456789)
    assert (t.header.frame_id, t.child_frame_id) == ("map", "camera_front")
    translation, rotation = t.transform.translation, t.transform.rotation
    assert (translation.x, translation.y, translation.z) == (1.5, -2.25, 0.75)
    assert (rotation.x, rotation.y, rotation.z, rotation.w) == (0.0, 0.0, 0.6, 0.8)

    # Same type as the distro's tf2_msgs, so real ROS 2 nodes (tf2_ros, rviz) match it.
    jazzy_hash = get_typestore(Stores.ROS2_JAZZY).hash_rihs01("tf2_msgs/msg/TFMessage")
    assert [(e.topic_type, str(e.topic_type_hash)) for e in endpoints] == [
        ("tf2_msgs/msg/TFMessage", jazzy_hash)
    ]
