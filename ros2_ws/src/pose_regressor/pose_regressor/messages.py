"""Conversions between pose estimates and ROS messages (pose, covariance, diagnostics, stamps)."""

from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Pose, PoseStamped, PoseWithCovarianceStamped
from numpy.typing import NDArray

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


def pose_with_covariance(
    estimate: PoseEstimate, stamp_ns: int, frame_id: str, covariance: NDArray[np.float64] | None = None
) -> PoseWithCovarianceStamped:
    """The estimate with a 6x6 covariance, row-major: `covariance` if given (e.g. converted to
    roll/pitch/yaw by `pose_regressor.covariance`), else the estimate's (x, y, z, rot-x, rot-y,
    rot-z about the fixed axes of `frame_id`, the message definition)."""
    msg = PoseWithCovarianceStamped()
    msg.header.stamp = time_from_ns(stamp_ns)
    msg.header.frame_id = frame_id
    msg.pose.pose = pose_message(estimate)
    matrix = estimate.covariance if covariance is None else covariance
    msg.pose.covariance = [float(v) for v in np.asarray(matrix, dtype=np.float64).reshape(-1)]
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
