"""Conversions between pose estimates and ROS messages (the only ROS-typed code besides the node)."""

from __future__ import annotations

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Pose, PoseStamped, PoseWithCovarianceStamped

from pose_regressor.pipeline import DiagnosticsSnapshot
from pose_regressor.uncertainty import PoseEstimate

NS_PER_S = 1_000_000_000


def time_from_ns(stamp_ns: int) -> Time:
    return Time(sec=stamp_ns // NS_PER_S, nanosec=stamp_ns % NS_PER_S)


def ns_from_time(stamp: Time) -> int:
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def pose_message(estimate: PoseEstimate) -> Pose:
    pose = Pose()
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in estimate.translation)
    o = pose.orientation
    o.x, o.y, o.z, o.w = (float(v) for v in estimate.quat_xyzw)
    return pose


def pose_stamped(estimate: PoseEstimate, stamp_ns: int, frame_id: str) -> PoseStamped:
    msg = PoseStamped()
    msg.header.stamp = time_from_ns(stamp_ns)
    msg.header.frame_id = frame_id
    msg.pose = pose_message(estimate)
    return msg


def pose_with_covariance(estimate: PoseEstimate, stamp_ns: int, frame_id: str) -> PoseWithCovarianceStamped:
    """Covariance row-major over (x, y, z, rot-x, rot-y, rot-z) in `frame_id`, as REP-103 and
    robot_localization expect (rotations about the fixed map axes)."""
    msg = PoseWithCovarianceStamped()
    msg.header.stamp = time_from_ns(stamp_ns)
    msg.header.frame_id = frame_id
    msg.pose.pose = pose_message(estimate)
    msg.pose.covariance = [float(v) for v in estimate.covariance.reshape(-1)]
    return msg


def diagnostic_array(
    snapshot: DiagnosticsSnapshot, name: str, hardware_id: str, stamp: Time
) -> DiagnosticArray:
    status = DiagnosticStatus()
    status.level = bytes([snapshot.level])
    status.name = name
    status.message = snapshot.message
    status.hardware_id = hardware_id
    status.values = [KeyValue(key=k, value=v) for k, v in snapshot.values.items()]
    array = DiagnosticArray()
    array.header.stamp = stamp
    array.status = [status]
    return array
