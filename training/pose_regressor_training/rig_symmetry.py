"""The yaw symmetry of a rig whose cameras are evenly spaced about base z.

Augmentation (the track shift) and the model (track averaging at test time) both use it: a cyclic
shift of the camera order by ``k`` is the robot yawed by ``k * Δ`` about its own z axis.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import roma
import torch
from numpy.typing import NDArray

from pose_regressor.rig import Rig

FloatArray = NDArray[np.float64]

#: Default tolerances for the track-symmetry check of the rig extrinsics.
TRACK_ATOL_M = 1e-3
TRACK_ATOL_RAD = 1e-3


def track_shift_yaw(rig: Rig, atol_m: float = TRACK_ATOL_M, atol_rad: float = TRACK_ATOL_RAD) -> float:
    """The yaw step Δ (radians, signed) of the rig's track symmetry, or ValueError why there is none.

    The track shift is exact when camera ``i+1`` (cyclically, in rig order) is camera ``i`` turned
    by Δ about base z: ``T_base_cam[i+1] = Rz(Δ) · T_base_cam[i]`` (rotation *and* translation), with
    ``|Δ| = 360° / T`` and identical intrinsics. Then the robot yawed by ``kΔ`` about its own z puts
    camera ``i`` exactly where camera ``i+k`` was. Δ > 0 when the rig order turns left
    (counter-clockwise seen from above, e.g. the quad preset front, left, back, right: Δ = +90°),
    Δ < 0 when it turns right. Cameras may be tilted, as long as they are all tilted alike.

    Raises:
        ValueError: fewer than 2 cameras, different intrinsics, cameras that differ by more than a yaw
            about base z (e.g. tilted differently), uneven yaw spacing, or translations that are not
            the same mount rotated (tolerances `atol_m`, `atol_rad`).
    """
    cams = rig.cameras
    n = len(cams)
    if n < 2:
        raise ValueError(
            f"track augmentation needs a rig of 2 or more cameras evenly spaced in yaw; this rig has {n}"
        )
    first = dataclasses.astuple(cams[0].intrinsics)
    for cam in cams[1:]:
        if not np.allclose(dataclasses.astuple(cam.intrinsics), first, rtol=0.0, atol=1e-6):
            raise ValueError(
                f"track augmentation needs identical intrinsics on all cameras; "
                f"{cam.name!r} has {cam.intrinsics}, {cams[0].name!r} has {cams[0].intrinsics}"
            )
    relative = cams[1].rotation_matrix() @ cams[0].rotation_matrix().T
    # R[2,2] = cos(tilt) ≈ 1 - tilt²/2, so this is tilt > atol_rad; 1e-12 absorbs rounding
    if abs(relative[2, 2] - 1.0) > atol_rad**2 / 2 + 1e-12:
        tilt = math.degrees(math.acos(float(np.clip(relative[2, 2], -1.0, 1.0))))
        raise ValueError(
            f"track augmentation needs cameras that differ only by a yaw about base z; "
            f"{cams[1].name!r} is {cams[0].name!r} rotated about another axis (z tilted by {tilt:.3g}°), "
            "e.g. the cameras are pitched or rolled differently"
        )
    step = 2.0 * math.pi / n
    first_step = math.atan2(relative[1, 0], relative[0, 0])
    # the sign of Δ: whichever of ±360°/T the first pair's yaw is nearer to
    delta = step if abs(_wrap(first_step - step)) <= abs(_wrap(first_step + step)) else -step
    for i in range(n):
        a, b = cams[i], cams[(i + 1) % n]
        rz = _rot_z(delta)
        rot_err = _angle_between(rz @ a.rotation_matrix(), b.rotation_matrix())
        if rot_err > atol_rad:
            yaws = ", ".join(f"{c.name} {math.degrees(c.yaw()):.1f}°" for c in cams)
            raise ValueError(
                f"track augmentation needs cameras evenly spaced in yaw by 360°/{n} = "
                f"{math.degrees(step):.4g}° in rig order, all mounted alike; {b.name!r} is off by "
                f"{math.degrees(rot_err):.3g}° from {a.name!r} turned by {math.degrees(delta):.4g}° "
                f"about base z (yaws: {yaws})"
            )
        t_err = float(np.linalg.norm(rz @ a.translation - b.translation))
        if t_err > atol_m:
            raise ValueError(
                f"track augmentation needs symmetric mounting positions: {b.name!r} at "
                f"{np.round(b.translation, 4).tolist()} m should be {a.name!r}'s position turned by "
                f"{math.degrees(delta):.4g}° about base z, {np.round(rz @ a.translation, 4).tolist()} m "
                f"(off by {t_err:.3g} m)"
            )
    return delta


def apply_track_shift(
    images: torch.Tensor, q: torch.Tensor, shifts: torch.Tensor, yaw_step: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Shift each sample's cameras cyclically by ``k`` and yaw its label by ``kΔ`` in the base frame.

    For sample b with ``k = shifts[b]``: camera ``i`` gets the image camera ``(i + k) mod T`` saw, and
    ``T_map_base ← T_map_base · Rz(k · yaw_step)`` (right-multiplication: a yaw about the robot's own
    z axis at the same position, so ``t`` is unchanged). With ``yaw_step`` from `track_shift_yaw`
    the result is exactly what the rig sees at the new pose.

    ``images`` [B, T, 3, H, W] (any dtype), ``q`` [B, 4] xyzw, ``shifts`` [B] any integers (taken
    modulo T), ``yaw_step`` Δ in radians. Returns the shifted images and the rotated labels (unit,
    w >= 0, q's dtype).
    """
    batch, num_cameras = images.shape[:2]
    k = shifts.reshape(batch).long().cpu()
    index = (torch.arange(num_cameras) + k[:, None]) % num_cameras  # [B, T]: source camera of camera i
    rows = torch.arange(batch)[:, None]
    shifted = images[rows.to(images.device), index.to(images.device)]
    q_yaw = yaw_quaternions(yaw_step * k.to(torch.float64)).to(q.dtype).to(q.device)
    q_new: torch.Tensor = roma.quat_product(q, q_yaw)
    # keep the batch convention w >= 0
    q_new = torch.where(q_new[..., 3:4] < 0, -q_new, q_new)
    return shifted, q_new


def yaw_quaternions(angles: torch.Tensor) -> torch.Tensor:
    """Rotations about z by `angles` (radians, any shape) -> xyzw quaternions (..., 4)."""
    half = 0.5 * angles
    zeros = torch.zeros_like(half)
    return torch.stack([zeros, zeros, torch.sin(half), torch.cos(half)], dim=-1)


def _rot_z(angle: float) -> FloatArray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _angle_between(r_a: FloatArray, r_b: FloatArray) -> float:
    cos = (float(np.trace(r_a.T @ r_b)) - 1.0) / 2.0
    # rounding can push the cosine just past ±1, where acos fails
    return math.acos(min(1.0, max(-1.0, cos)))


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2.0 * math.pi) - math.pi
