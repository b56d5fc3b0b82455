"""Re-express a pose covariance for consumers that read the rotation block differently (ROS-free).

Our estimator (:mod:`pose_regressor.uncertainty`) produces the covariance of
``x, y, z, rot-x, rot-y, rot-z`` with rotation residuals ``R_i = Exp(r_i) R_mean``: small
rotations about the FIXED map axes, which is what the ``PoseWithCovariance`` message
definition says.  robot_localization, however, reads the rotation block as the covariance
of the roll, pitch and yaw angles (tf2's ``getRPY``: ``R = Rz(yaw) Ry(pitch) Rx(roll)``).
The two agree only for a level robot facing +x; at yaw 90 deg the roll and pitch variances
are swapped, so publishing the fixed-axis block unchanged would make an EKF trust the wrong
axis.  The functions here convert with the exact first-order Jacobian.

Units: metres and radians; covariances are 6x6, row-major ``x, y, z, rot/angle x, y, z``.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from pose_regressor import pose

__all__ = ["MIN_COS_PITCH", "ROTATION_CONVENTIONS", "fixed_axes_to_rpy", "to_convention"]

FloatArray = npt.NDArray[np.float64]

#: Names accepted by :func:`to_convention` (and by the node's covariance parameter).
ROTATION_CONVENTIONS: Final = ("fixed_axes", "rpy")

#: Lower bound on cos(pitch) (about 0.057 deg from +-90 deg).  At gimbal lock roll and yaw are
#: not separately defined and their variances are unbounded; the bound keeps the published
#: matrix finite and positive definite (very large roll/yaw variances, i.e. "don't trust").
MIN_COS_PITCH: Final = 1e-3


def _validated_covariance(covariance: npt.ArrayLike) -> FloatArray:
    cov = np.asarray(covariance, dtype=np.float64)
    if cov.shape != (6, 6):
        raise ValueError(f"covariance must have shape (6, 6), got {cov.shape}")
    if not np.all(np.isfinite(cov)):
        raise ValueError("covariance contains non-finite values (nan or inf)")
    return cov


def _rpy_from_fixed_jacobian_inverse(quat_xyzw: npt.ArrayLike) -> FloatArray:
    """``J^-1`` mapping a small fixed-axis rotation ``delta`` to ``d(roll, pitch, yaw)``.

    The angles come straight from the matrix (tf2's ``getRPY`` formulas) rather than
    scipy's ``as_euler``, which warns at gimbal lock through the non-thread-safe
    ``warnings`` machinery.
    """
    q = pose.normalize_quaternion(quat_xyzw)
    if q.shape != (4,):
        raise ValueError(f"quat_xyzw must have shape (4,), got {q.shape}")
    rot = pose.to_matrix(np.zeros(3), q)[:3, :3]
    yaw = np.arctan2(rot[1, 0], rot[0, 0])
    pitch = np.arctan2(-rot[2, 0], np.hypot(rot[0, 0], rot[1, 0]))  # in [-pi/2, pi/2]
    cy, sy = np.cos(yaw), np.sin(yaw)
    cp = max(float(np.cos(pitch)), MIN_COS_PITCH)
    tp = np.sin(pitch) / cp
    # J = [Rz Ry e_x, Rz e_y, e_z] = [[cy cp, -sy, 0], [sy cp, cy, 0], [-sp, 0, 1]]; closed-form inverse.
    return np.array(
        [
            [cy / cp, sy / cp, 0.0],
            [-sy, cy, 0.0],
            [cy * tp, sy * tp, 1.0],
        ]
    )


def fixed_axes_to_rpy(quat_xyzw: npt.ArrayLike, covariance: npt.ArrayLike) -> FloatArray:
    """Covariance of ``(x, y, z, roll, pitch, yaw)`` from one whose rotation block is about the map axes.

    Needed because robot_localization interprets the rotation block as roll/pitch/yaw
    variances (see the module docstring).  First order:
    ``delta_fixed = J d(roll, pitch, yaw)`` with ``J = [Rz(yaw) Ry(pitch) e_x, Rz(yaw) e_y, e_z]``,
    so ``C_rpy = J^-1 C_rot J^-T`` and the translation/rotation cross blocks get ``J^-1`` on
    the rotation side; translation variances are unchanged.

    Gimbal lock: ``det J = cos(pitch)``; it is bounded below by :data:`MIN_COS_PITCH`, so
    near pitch +-90 deg the roll and yaw variances become very large but stay finite and a
    positive definite input gives a positive definite output.

    ``quat_xyzw`` is the orientation of the mean pose ``T_map_base`` (normalized here). Returns a new
    symmetric 6x6 array.
    """
    cov = _validated_covariance(covariance)
    a = np.eye(6)
    a[3:, 3:] = _rpy_from_fixed_jacobian_inverse(quat_xyzw)
    out = a @ cov @ a.T
    return np.asarray(0.5 * (out + out.T), dtype=np.float64)


def to_convention(quat_xyzw: npt.ArrayLike, covariance: npt.ArrayLike, convention: str) -> FloatArray:
    """The covariance in the rotation convention named by a parameter (one of :data:`ROTATION_CONVENTIONS`).

    ``"fixed_axes"`` returns a validated, symmetrized copy (the message definition's
    convention); ``"rpy"`` applies :func:`fixed_axes_to_rpy`.

    Raises:
        ValueError: unknown convention (the message lists the allowed names) or malformed input.
    """
    if convention == "fixed_axes":
        cov = _validated_covariance(covariance)
        pose.normalize_quaternion(quat_xyzw)  # same input checks whichever convention is chosen
        return np.asarray(0.5 * (cov + cov.T), dtype=np.float64)
    if convention == "rpy":
        return fixed_axes_to_rpy(quat_xyzw, covariance)
    raise ValueError(
        f"unknown covariance rotation convention {convention!r}; allowed: {', '.join(ROTATION_CONVENTIONS)}"
    )
