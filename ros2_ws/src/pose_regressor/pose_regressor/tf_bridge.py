"""The localizer's TF output: `map -> odom` like AMCL, or `map -> base_link` without odometry.

tf2_ros is a C++ extension that is not on PyPI, so the node listens to /tf and /tf_static
itself (into `transforms.TransformBuffer`) and publishes `tf2_msgs/TFMessage` on /tf with the
QoS that tf2_ros' broadcasters and listeners use. With an odometry frame, the transform is
computed as AMCL does: T_map_odom = T_map_base(image time) * T_odom_base(image time)^-1, so the
odometry keeps moving the robot smoothly between poses. The transform is stamped with the
image time plus `transform_tolerance` (post-dated, as AMCL does, so that lookups at "now" do
not extrapolate between two poses).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from geometry_msgs.msg import TransformStamped
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from pose_regressor.messages import time_from_ns
from pose_regressor.transforms import TransformBuffer, TransformUnavailable, map_to_odom
from pose_regressor.uncertainty import PoseEstimate

# tf2_ros::DynamicListenerQoS / DynamicBroadcasterQoS and StaticListenerQoS.
TF_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
TF_STATIC_QOS = QoSProfile(
    depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)
# Odometry may lag the image by a few ms: use its newest sample up to this far from the image stamp.
ODOM_TOLERANCE_NS = 100_000_000


class TfUnavailableError(RuntimeError):
    """tf2_msgs cannot be imported (publish_tf needs it)."""


def _tf_message_type() -> Any:
    try:
        from tf2_msgs.msg import TFMessage
    except ImportError as exc:
        raise TfUnavailableError(
            "publish_tf needs the tf2_msgs message package (ros-<distro>-tf2-msgs; `make setup` "
            f"builds it in the development venv): {exc}"
        ) from None
    return TFMessage


class TfBridge:
    """Publishes the localized transform and, with an odometry frame, listens to /tf for it
    (`listen`: the node switches listening on and off as `odom_frame` changes at runtime)."""

    def __init__(self, node: Node, listen: bool) -> None:
        self._node = node
        self._tf_type = _tf_message_type()
        self.buffer = TransformBuffer()
        self.publisher = node.create_publisher(self._tf_type, "/tf", TF_QOS)
        self._subscriptions: list[Any] = []
        self.published = 0
        self.rejected = 0
        self.listen(listen)

    @property
    def listening(self) -> bool:
        return bool(self._subscriptions)

    def listen(self, enabled: bool) -> None:
        """Subscribes to /tf and /tf_static (an odometry frame needs them), or unsubscribes and
        forgets what was heard (a map -> base_frame transform needs nothing). Called at configure
        and whenever `odom_frame` changes at runtime; /tf_static is transient-local, so static
        transforms heard before an unsubscribe are delivered again after the next subscribe."""
        if enabled == self.listening:
            return
        if enabled:
            self._subscriptions = [
                self._node.create_subscription(self._tf_type, "/tf", self._on_tf(False), TF_QOS),
                self._node.create_subscription(self._tf_type, "/tf_static", self._on_tf(True), TF_STATIC_QOS),
            ]
            return
        for subscription in self._subscriptions:
            self._node.destroy_subscription(subscription)
        self._subscriptions = []
        self.buffer = TransformBuffer()

    def _on_tf(self, static: bool) -> Any:
        def callback(msg: Any) -> None:
            for transform in msg.transforms:
                t, r = transform.transform.translation, transform.transform.rotation
                stamp = transform.header.stamp
                try:
                    self.buffer.add(
                        transform.header.frame_id,
                        transform.child_frame_id,
                        int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec),
                        np.array([t.x, t.y, t.z]),
                        np.array([r.x, r.y, r.z, r.w]),
                        static=static,
                    )
                except ValueError:  # someone else's broken transform: not ours to fix
                    self.rejected += 1

        return callback

    def publish(
        self,
        estimate: PoseEstimate,
        stamp_ns: int,
        map_frame: str,
        base_frame: str,
        odom_frame: str,
        tolerance_s: float,
    ) -> None:
        """Publishes map -> odom (or map -> base_frame when `odom_frame` is empty).

        Raises:
            TransformUnavailable: no odom -> base_frame transform near `stamp_ns`.
        """
        t, q = estimate.translation, estimate.quat_xyzw
        child = base_frame
        if odom_frame:
            odom_t, odom_q = self.buffer.lookup(odom_frame, base_frame, stamp_ns, ODOM_TOLERANCE_NS)
            t, q = map_to_odom(t, q, odom_t, odom_q)
            child = odom_frame
        msg = self._tf_type()
        transform = TransformStamped()
        transform.header.stamp = time_from_ns(stamp_ns + round(tolerance_s * 1e9))
        transform.header.frame_id = map_frame
        transform.child_frame_id = child
        tr, rot = transform.transform.translation, transform.transform.rotation
        tr.x, tr.y, tr.z = (float(v) for v in t)
        rot.x, rot.y, rot.z, rot.w = (float(v) for v in q)
        msg.transforms = [transform]
        self.publisher.publish(msg)
        self.published += 1

    def destroy(self) -> None:
        self.listen(False)
        self._node.destroy_publisher(self.publisher)


__all__ = ["TfBridge", "TfUnavailableError", "TransformUnavailable"]
