"""Stand-alone ROS 2 peers for the DDS smoke tests, run as separate processes.

`publish` / `receive`: small reliable images, checked byte for byte.
`initialpose`: an AMCL-like subscriber that prints the first initial pose it receives.
`burst` / `count`: sets of four 640x480 rgb8 images at 30 Hz with sensor-data QoS (best effort),
as four cameras publish them; the receiver counts what arrives.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
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


BURST_CAMERAS = ("front", "left", "back", "right")


def burst(sets: int, wait_s: float) -> None:
    rclpy.init()
    node = rclpy.create_node("burst_publisher")
    pubs = [
        node.create_publisher(Image, f"/burst/{camera}/image_raw", qos_profile_sensor_data)
        for camera in BURST_CAMERAS
    ]
    deadline = time.monotonic() + wait_s
    while not all(p.get_subscription_count() for p in pubs) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # discovery of the reverse direction
    msg = Image()
    msg.height, msg.width, msg.encoding, msg.step = 480, 640, "rgb8", 640 * 3
    msg.data = np.zeros(480 * 640 * 3, dtype=np.uint8).tobytes()
    start = time.monotonic()
    for k in range(sets):
        time.sleep(max(0.0, start + k / 30.0 - time.monotonic()))
        msg.header.frame_id = str(k)
        for pub in pubs:
            pub.publish(msg)
    time.sleep(1.0)
    node.destroy_node()
    rclpy.shutdown()


def count(sets: int, seconds: float) -> None:
    rclpy.init()
    node = rclpy.create_node("burst_receiver")
    received = dict.fromkeys(BURST_CAMERAS, 0)

    def counter(camera: str) -> object:
        def on_image(msg: Image) -> None:
            received[camera] += 1

        return on_image

    for camera in BURST_CAMERAS:
        node.create_subscription(
            Image, f"/burst/{camera}/image_raw", counter(camera), qos_profile_sensor_data
        )
    deadline = time.monotonic() + seconds
    while min(received.values()) < sets and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    print(json.dumps({"received": received}))
    node.destroy_node()
    rclpy.shutdown()


def initialpose(topic: str, seconds: float) -> None:
    """Nav2 AMCL's initialpose subscription (system-default QoS: reliable, volatile); prints the
    first message received as JSON."""
    from geometry_msgs.msg import PoseWithCovarianceStamped

    rclpy.init()
    node = rclpy.create_node("amcl_like")
    received: list[PoseWithCovarianceStamped] = []
    node.create_subscription(
        PoseWithCovarianceStamped,
        topic,
        received.append,
        QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE),
    )
    deadline = time.monotonic() + seconds
    while not received and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    first = received[0] if received else None
    print(
        json.dumps(
            {
                "count": len(received),
                "frame_id": first.header.frame_id if first else None,
                "stamp_ns": first.header.stamp.sec * 1_000_000_000 + first.header.stamp.nanosec
                if first
                else None,
            }
        )
    )
    node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "initialpose":
        initialpose(sys.argv[2], float(sys.argv[3]))
    elif mode == "publish":
        publish(float(sys.argv[2]))
    elif mode == "receive":
        receive(int(sys.argv[2]), float(sys.argv[3]))
    elif mode == "burst":
        burst(int(sys.argv[2]), float(sys.argv[3]))
    else:
        count(int(sys.argv[2]), float(sys.argv[3]))
