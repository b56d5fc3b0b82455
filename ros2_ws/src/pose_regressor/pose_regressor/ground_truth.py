"""Ground-truth trajectories from bags: time-stamped `T_map_base` with interpolation (ROS-free).

Used by `pose-train from-bag` (labels for each synchronized camera set) and by
`pose-regressor eval-node` (the truth for each published pose).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pose_regressor.pose import (
    compose,
    normalize_quaternion,
    quaternion_to_rotvec,
    relative_pose,
    rotvec_to_quaternion,
)

FloatArray = NDArray[np.float64]

GT_TYPES = (
    "geometry_msgs/msg/PoseStamped",
    "geometry_msgs/msg/PoseWithCovarianceStamped",
    "nav_msgs/msg/Odometry",
    "geometry_msgs/msg/TransformStamped",
)


class DropReason(Enum):
    """Why a synchronized set got no ground-truth pose."""

    OUTSIDE_GT = "outside the ground-truth time range"
    GT_GAP = "between ground-truth messages further apart than the maximum gap"


def stamp_ns(header: Any) -> int:
    """Integer nanoseconds of a message header's stamp."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


class GroundTruthTrack:
    """Time-stamped poses ``T_map_base`` with interpolation (linear translation, slerp rotation).

    Stamps need not be sorted; for repeated stamps the first pose is kept.
    """

    def __init__(self, stamps_ns: Sequence[int], translations: FloatArray, quats_xyzw: FloatArray) -> None:
        stamps = np.asarray(stamps_ns, dtype=np.int64)
        t = np.asarray(translations, dtype=np.float64).reshape(-1, 3)
        q = normalize_quaternion(np.asarray(quats_xyzw, dtype=np.float64).reshape(-1, 4))
        if not len(stamps) == len(t) == len(q):
            raise ValueError(f"got {len(stamps)} stamps, {len(t)} translations and {len(q)} rotations")
        if not np.all(np.isfinite(t)):
            raise ValueError("ground-truth translations contain non-finite values")
        # np.unique sorts the stamps; return_index gives each stamp's first occurrence
        self.stamps_ns, first = np.unique(stamps, return_index=True)
        self.translations = t[first]
        self.quats_xyzw = q[first]

    def __len__(self) -> int:
        return len(self.stamps_ns)

    def interpolate(self, stamp_ns: int, max_gap_ns: int) -> tuple[FloatArray, FloatArray] | DropReason:
        """``(t (3,), q (4,) xyzw, w >= 0)`` at ``stamp_ns``, or why there is none.

        A stamp equal to a ground-truth stamp gets that pose whatever the gaps around it.
        """
        stamps = self.stamps_ns
        if len(stamps) == 0 or stamp_ns < stamps[0] or stamp_ns > stamps[-1]:
            return DropReason.OUTSIDE_GT
        hi = int(np.searchsorted(stamps, stamp_ns, side="left"))
        if stamps[hi] == stamp_ns:
            return self.translations[hi].copy(), self.quats_xyzw[hi].copy()
        lo = hi - 1
        gap = int(stamps[hi]) - int(stamps[lo])
        if gap > max_gap_ns:
            return DropReason.GT_GAP
        alpha = (stamp_ns - int(stamps[lo])) / gap
        t = self.translations[lo] + alpha * (self.translations[hi] - self.translations[lo])
        q_lo = self.quats_xyzw[lo]
        _, q_rel = relative_pose(np.zeros(3), q_lo, np.zeros(3), self.quats_xyzw[hi])
        step = alpha * quaternion_to_rotvec(q_rel)  # along the shorter arc (angle <= pi)
        _, q = compose(np.zeros(3), q_lo, np.zeros(3), rotvec_to_quaternion(step))
        return t, q


def gt_pose_fields(msg: Any, msgtype: str) -> tuple[Any, Any]:
    """(position-like, orientation-like) fields of a ground-truth message of one of `GT_TYPES`."""
    if msgtype == "geometry_msgs/msg/TransformStamped":
        return msg.transform.translation, msg.transform.rotation
    pose = msg.pose if msgtype == "geometry_msgs/msg/PoseStamped" else msg.pose.pose
    return pose.position, pose.orientation
