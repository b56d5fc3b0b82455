"""`odom_frame` changed at runtime with `publish_tf: true`, on a live localizer process over Fast
DDS: the accepted change takes effect (the node starts listening to /tf when a change makes it need
odometry, and stops when it no longer does), and `publish_tf`, which only an unconfigured node
takes, is refused while configured, alone or in one atomic set with `odom_frame`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest
from geometry_msgs.msg import PoseStamped, TransformStamped
from rcl_interfaces.srv import SetParametersAtomically
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from scipy.spatial.transform import Rotation

from pose_regressor.bundle import ModelBundle
from pose_regressor.transforms import map_to_odom
from tests.integration.node_client import RAW_TOPICS, Cameras, NodeProcess, RosPeer, pose_stamps
from tests.unit.bundle_fixtures import make_bundle

pytestmark = pytest.mark.ros

NODE = "/localizer"
TOLERANCE_NS = 250_000_000  # transform_tolerance: how far the node post-dates its transforms


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> ModelBundle:
    return make_bundle(tmp_path_factory.mktemp("runtime_frames") / "bundle")


@pytest.fixture
def peer() -> Iterator[RosPeer]:
    peer = RosPeer("odometry_and_consumer")
    yield peer
    peer.close()


def _odom_at(stamp: int) -> tuple[np.ndarray, np.ndarray]:
    """odom -> base_link at `stamp`: moving 1 cm per 50 ms frame, turned 30 degrees."""
    x = (stamp - 1_700_000_000_000_000_000) / 5e9
    return np.array([1.0 + x, 2.0, 0.0]), Rotation.from_euler("z", 30, degrees=True).as_quat()


def test_odom_frame_changed_at_runtime_starts_and_stops_the_tf_listener(
    bundle: ModelBundle, ros_env: dict[str, str], peer: RosPeer
) -> None:
    from tf2_msgs.msg import TFMessage

    tf_qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    tf_out = peer.record(TFMessage, "/tf", tf_qos)
    tf_pub = peer.node.create_publisher(TFMessage, "/tf", tf_qos)
    poses = peer.record(PoseStamped, "/localizer/pose")
    node = NodeProcess(
        [
            *("--bundle", str(bundle.path), "--ros-args", "-p", "mc_samples:=2"),
            *("-p", "publish_tf:=true", "-p", 'odom_frame:=""', "-p", "transform_tolerance:=0.25"),
        ],
        ros_env,
    )

    def ours(child: str) -> list[TransformStamped]:
        return [
            t
            for m in tf_out
            for t in m.transforms
            if t.header.frame_id == "map" and t.child_frame_id == child
        ]

    def listening() -> tuple[int, int]:
        """The localizer's subscriptions on /tf and /tf_static, as the graph shows them."""

        def count(topic: str) -> int:
            infos = peer.node.get_subscriptions_info_by_topic(topic)
            return sum(1 for info in infos if info.node_name == "localizer")

        return count("/tf"), count("/tf_static")

    def localize_until(child: str, count: int, timeout: float = 20.0) -> bool:
        """Sends odom -> base_link and a camera set at each image stamp until the localizer has
        published `count` more transforms map -> `child`."""
        goal = len(ours(child)) + count
        deadline = time.monotonic() + timeout
        while len(ours(child)) < goal and time.monotonic() < deadline:
            stamp = cameras.next_stamp()
            t, q = _odom_at(stamp)
            msg = TransformStamped()
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
            msg.header.frame_id, msg.child_frame_id = "odom", "base_link"
            tr, rot = msg.transform.translation, msg.transform.rotation
            tr.x, tr.y, tr.z = (float(v) for v in t)
            rot.x, rot.y, rot.z, rot.w = (float(v) for v in q)
            tf_pub.publish(TFMessage(transforms=[msg]))
            peer.spin_for(0.01)
            cameras.send(stamp)
            peer.spin_for(0.1)
        return len(ours(child)) >= goal

    def set_frame(value: str) -> None:
        assert peer.set_parameter(NODE, "odom_frame", value) == (True, ""), node.log()
        assert node.wait_for_line(f"parameters changed: odom_frame = {value!r}", 10.0), node.log()

    try:
        cameras = Cameras(peer, RAW_TOPICS)
        # odom_frame "": map -> base_link, and no /tf listener (nothing to look up).
        assert localize_until("base_link", 2), node.log()
        assert listening() == (0, 0)

        # "" -> "odom" at runtime: the node listens from now on and publishes map -> odom.
        set_frame("odom")
        base_links = len(ours("base_link"))
        assert localize_until("odom", 3), node.log()
        assert listening() == (1, 1)
        assert peer.spin_until(lambda: len(poses) >= len(ours("odom")), 5.0)
        by_stamp = dict(zip(pose_stamps(poses), poses, strict=True))
        for transform in ours("odom"):
            image_stamp = (
                transform.header.stamp.sec * 1_000_000_000 + transform.header.stamp.nanosec - TOLERANCE_NS
            )
            pose = by_stamp[image_stamp].pose
            p, o = pose.position, pose.orientation
            expected_t, expected_q = map_to_odom(
                np.array([p.x, p.y, p.z]), np.array([o.x, o.y, o.z, o.w]), *_odom_at(image_stamp)
            )
            tr, rot = transform.transform.translation, transform.transform.rotation
            assert [tr.x, tr.y, tr.z] == pytest.approx(list(expected_t), abs=1e-6)
            assert abs(float(np.array([rot.x, rot.y, rot.z, rot.w]) @ expected_q)) == pytest.approx(
                1.0, abs=1e-9
            )
        # at most the poses in flight when the change came were still map -> base_link
        assert len(ours("base_link")) - base_links <= 2

        # publish_tf builds the TF output at configure: refused while active, alone or in one
        # atomic set with odom_frame (then odom_frame is left as it was too).
        ok, reason = peer.set_parameter(NODE, "publish_tf", False)
        assert not ok and "may change only while the node is unconfigured" in reason
        request = SetParametersAtomically.Request(
            parameters=[
                Parameter("publish_tf", value=False).to_parameter_msg(),
                Parameter("odom_frame", value="").to_parameter_msg(),
            ]
        )
        result = peer.call(SetParametersAtomically, f"{NODE}/set_parameters_atomically", request).result
        assert not result.successful and "'publish_tf' may change only" in result.reason
        assert peer.get_parameter(NODE, "odom_frame") == "odom"
        assert peer.get_parameter(NODE, "publish_tf") is True
        assert listening() == (1, 1)

        # "odom" -> "" at runtime: map -> base_link again, and the listener is gone.
        set_frame("")
        assert peer.spin_until(lambda: listening() == (0, 0), 10.0), listening()
        odoms = len(ours("odom"))
        assert localize_until("base_link", 3), node.log()
        assert len(ours("odom")) - odoms <= 2

        # Set while inactive (configured): in force at the next activate.
        assert peer.transition(NODE, "deactivate")
        set_frame("odom")
        assert peer.spin_until(lambda: listening() == (1, 1), 10.0), listening()
        assert peer.transition(NODE, "activate")
        assert localize_until("odom", 2), node.log()

        # Unconfigured: publish_tf and odom_frame change together; configure builds what they ask.
        assert peer.transition(NODE, "deactivate") and peer.transition(NODE, "cleanup")
        assert peer.spin_until(lambda: listening() == (0, 0), 10.0), listening()
        request.parameters = [
            Parameter("publish_tf", value=False).to_parameter_msg(),
            Parameter("odom_frame", value="odom").to_parameter_msg(),
        ]
        result = peer.call(SetParametersAtomically, f"{NODE}/set_parameters_atomically", request).result
        assert result.successful, result.reason
        assert peer.transition(NODE, "configure") and peer.transition(NODE, "activate")
        sent, transforms = len(poses), len(tf_out)
        assert cameras.send_until(lambda: len(poses) >= sent + 3), node.log()
        # without publish_tf an odom_frame change at runtime is taken and needs nothing
        set_frame("")
        set_frame("odom")
        assert cameras.send_until(lambda: len(poses) >= sent + 6), node.log()
        peer.spin_for(0.5)
        assert len(tf_out) == transforms and listening() == (0, 0)
        assert not node.lines("Traceback") and not node.lines("could not apply"), node.log()
    finally:
        node.stop()
