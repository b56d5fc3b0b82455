"""Stand-alone ROS 2 peers for the DDS smoke test: `publish` and `receive` run as separate processes."""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

TOPIC = "/smoke/image_raw"
WIDTH, HEIGHT = 32, 24


def pattern(seq: int) -> np.ndarray:
    """A per-message image the receiver can check byte for byte."""
    return ((np.arange(HEIGHT * WIDTH * 3) * 7 + seq) % 251).astype(np.uint8)


def publish(seconds: float) -> None:
    rclpy.init()
    node = rclpy.create_node("smoke_publisher")
    pub = node.create_publisher(Image, TOPIC, QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    deadline = time.monotonic() + seconds
    seq = 0
    while time.monotonic() < deadline:
        msg = Image()
        msg.header.stamp = node.get_clock().now().to_msg()
        msg.header.frame_id = str(seq)
        msg.height, msg.width, msg.encoding, msg.step = HEIGHT, WIDTH, "rgb8", 3 * WIDTH
        msg.data = pattern(seq).tobytes()
        pub.publish(msg)
        seq += 1
        time.sleep(0.05)
    node.destroy_node()
    rclpy.shutdown()


def receive(count: int, seconds: float) -> None:
    rclpy.init()
    node = rclpy.create_node("smoke_receiver")
    received: list[dict[str, object]] = []

    def on_image(msg: Image) -> None:
        seq = int(msg.header.frame_id)
        intact = bytes(msg.data) == pattern(seq).tobytes()
        received.append(
            {"seq": seq, "intact": intact, "size": [msg.width, msg.height], "encoding": msg.encoding}
        )

    node.create_subscription(
        Image, TOPIC, on_image, QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    )
    deadline = time.monotonic() + seconds
    while len(received) < count and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    print(json.dumps({"received": received[:count], "rmw": rclpy.get_rmw_implementation_identifier()}))
    node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    if sys.argv[1] == "publish":
        publish(float(sys.argv[2]))
    else:
        receive(int(sys.argv[2]), float(sys.argv[3]))
