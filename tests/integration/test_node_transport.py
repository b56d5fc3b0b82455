"""Camera frames lost between a camera and the node are noticed by the node itself.

Best-effort (sensor QoS) images that the transport drops never reach a callback, so the node
cannot count them by itself; the DDS reader can: it sees gaps in the writer's sequence numbers
and reports them as lost samples, which the node turns into `frames_lost/<camera>` and a WARN
naming the camera and the large-images profile. The node runs in its own process with UDP as
its only transport and a socket receive buffer far smaller than one 640x480 image, the state
a host is in when large images travel without `config/fastdds_large_images.xml`.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import qos_profile_sensor_data

from pose_regressor.bundle import BundleCamera
from tests.integration.node_client import (
    BASE_NS,
    NodeProcess,
    RosPeer,
    raw_image,
    statuses,
)
from tests.unit.bundle_fixtures import CAMERAS, make_bundle

pytestmark = pytest.mark.ros

STATUS = "pose_regressor: /localizer"
WIDTH, HEIGHT = 640, 480
SMALL_UDP_PROFILE = """<?xml version="1.0" encoding="UTF-8" ?>
<profiles xmlns="http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles">
  <transport_descriptors>
    <transport_descriptor>
      <transport_id>udp_small_buffers</transport_id>
      <type>UDPv4</type>
      <receiveBufferSize>32768</receiveBufferSize>
    </transport_descriptor>
  </transport_descriptors>
  <participant profile_name="small_udp" is_default_profile="true">
    <rtps>
      <userTransports><transport_id>udp_small_buffers</transport_id></userTransports>
      <useBuiltinTransports>false</useBuiltinTransports>
    </rtps>
  </participant>
</profiles>
"""


def test_node_reports_frames_lost_on_the_way(tmp_path: Path, ros_env: dict[str, str]) -> None:
    cameras = tuple(BundleCamera(name, f"/{name}/image_raw", WIDTH, HEIGHT) for name in CAMERAS)
    bundle = make_bundle(tmp_path / "bundle", cameras=cameras)
    profile = tmp_path / "small_udp.xml"
    profile.write_text(SMALL_UDP_PROFILE)
    env = dict(ros_env, FASTRTPS_DEFAULT_PROFILES_FILE=str(profile))
    node = NodeProcess(["--bundle", str(bundle.path)], env)
    peer = RosPeer()
    try:
        diagnostics = peer.record(DiagnosticArray, "/diagnostics")
        publishers = [
            peer.node.create_publisher(type(raw_image(0)), camera.topic, qos_profile_sensor_data)
            for camera in cameras
        ]
        assert peer.spin_until(lambda: all(p.get_subscription_count() for p in publishers), 20.0), node.log()
        stamp = BASE_NS

        def warned() -> bool:
            return any("lost on the way" in message for _, message, _ in statuses(diagnostics, STATUS))

        # Bursts of frames (as a driver flushing its queue sends them) overflow the small
        # buffer; frames that get through between bursts show the reader the gaps.
        deadline = time.monotonic() + 20.0
        while not warned() and time.monotonic() < deadline:
            for _ in range(4):
                stamp += 33_333_333
                for publisher in publishers:
                    publisher.publish(raw_image(stamp, WIDTH, HEIGHT))
            peer.spin_for(0.15)
        assert warned(), statuses(diagnostics, STATUS)[-2:]
        level, message, values = next(s for s in statuses(diagnostics, STATUS) if "lost on the way" in s[1])
        assert level == 1 and "fastdds_large_images.xml" in message
        lost = {name: int(values[f"frames_lost/{name}"]) for name in CAMERAS}
        assert any(count >= 3 for count in lost.values()), values
        assert node.alive()
    finally:
        peer.close()
        node.stop()
