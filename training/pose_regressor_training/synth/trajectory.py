"""Smooth, collision-free robot trajectories through the scene (poses `T_map_base`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.interpolate import make_interp_spline
from scipy.ndimage import gaussian_filter1d
from scipy.spatial.transform import Rotation

from pose_regressor_training.synth.scene import Scene

FloatArray = NDArray[np.float64]
KINDS = ("drone", "ground")


@dataclass(frozen=True)
class TrajectoryStyle:
    """How a kind of robot moves. Angles in radians, speeds in m/s, heights in metres."""

    planar: bool
    height_range: tuple[float, float]
    speed_range: tuple[float, float]
    yaw_wander: float  # amplitude of the camera heading's deviation from the direction of travel
    tilt_wander: float  # amplitude of roll and pitch (0 for ground robots)
    floor_margin: float = 0.3  # clearance to floor and ceiling
    wall_margin: float = 0.45
    obstacle_margin: float = 0.45

    @property
    def room_margin(self) -> FloatArray:
        return np.array([self.wall_margin, self.wall_margin, self.floor_margin])


STYLES = {
    "drone": TrajectoryStyle(False, (0.5, 2.5), (0.5, 1.0), np.radians(40.0), np.radians(8.0)),
    "ground": TrajectoryStyle(True, (0.25, 0.25), (0.4, 0.8), np.radians(25.0), 0.0, floor_margin=0.1),
}


class TrajectoryError(RuntimeError):
    """No collision-free trajectory could be found."""


def _wander(rng: np.random.Generator, times: FloatArray, amplitude: float) -> FloatArray:
    """A smooth random signal in [-amplitude, amplitude]: a few slow sinusoids."""
    if amplitude == 0:
        return np.zeros_like(times)
    freqs = rng.uniform(0.03, 0.2, size=3)
    phases = rng.uniform(0, 2 * np.pi, size=3)
    weights = rng.dirichlet(np.ones(3))
    signal = sum(
        w * np.sin(2 * np.pi * f * times + p) for w, f, p in zip(weights, freqs, phases, strict=True)
    )
    return amplitude * np.asarray(signal)


def _segment_is_free(scene: Scene, a: FloatArray, b: FloatArray, style: TrajectoryStyle) -> bool:
    steps = max(2, int(np.linalg.norm(b - a) / 0.05))
    pts = a + np.linspace(0.0, 1.0, steps)[:, None] * (b - a)
    return bool(np.all(scene.is_free(pts, style.room_margin, style.obstacle_margin)))


def _random_free_point(scene: Scene, rng: np.random.Generator, style: TrajectoryStyle) -> FloatArray:
    lo, hi = np.asarray(scene.config.room.lo), np.asarray(scene.config.room.hi)
    for _ in range(10_000):
        p = np.array([rng.uniform(lo[0], hi[0]), rng.uniform(lo[1], hi[1]), rng.uniform(*style.height_range)])
        if scene.is_free(p[None], style.room_margin, style.obstacle_margin)[0]:
            return p
    raise TrajectoryError("the scene has no free space for this trajectory style")


def _waypoints(scene: Scene, rng: np.random.Generator, style: TrajectoryStyle, length: float) -> FloatArray:
    points = [_random_free_point(scene, rng, style)]
    travelled = 0.0
    heading = rng.uniform(0, 2 * np.pi)
    while travelled < length or len(points) < 4:
        for attempt in range(300):
            # Mostly keep going, sometimes turn: smooth paths that still explore the room.
            # When cornered, any direction and shorter steps.
            heading_try = heading + (rng.normal(0.0, 0.9) if attempt < 100 else rng.uniform(-np.pi, np.pi))
            step = rng.uniform(1.0, 2.5) if attempt < 100 else rng.uniform(0.4, 1.5)
            climb = 0.0 if style.planar else rng.uniform(-0.6, 0.6)
            candidate = points[-1] + np.array([np.cos(heading_try) * step, np.sin(heading_try) * step, climb])
            lo_z, hi_z = style.height_range
            candidate[2] = np.clip(candidate[2], lo_z, hi_z)
            if _segment_is_free(scene, points[-1], candidate, style):
                heading = heading_try
                travelled += float(np.linalg.norm(candidate - points[-1]))
                points.append(candidate)
                break
        else:
            raise TrajectoryError("could not extend the trajectory without collision")
    return np.array(points)


def generate_trajectory(
    scene: Scene, kind: str, n_frames: int, fps: float, rng: np.random.Generator, max_tries: int = 100
) -> tuple[FloatArray, FloatArray]:
    """`n_frames` poses sampled at `fps` along one smooth collision-free path.

    Returns translations (n, 3) and quaternions (n, 4, xyzw, w >= 0) of `T_map_base`. Base x
    points roughly along the direction of travel, with a slow heading wander; drones also
    roll and pitch a little, ground robots stay level at a fixed height.
    """
    if kind not in STYLES:
        raise ValueError(f"unknown trajectory kind {kind!r}; choose one of {', '.join(KINDS)}")
    if n_frames < 1 or fps <= 0:
        raise ValueError("n_frames must be >= 1 and fps > 0")
    style = STYLES[kind]
    times = np.arange(n_frames) / fps
    for _ in range(max_tries):
        speed = rng.uniform(*style.speed_range)
        length = max(speed * times[-1], 0.5)
        try:
            waypoints = _waypoints(scene, rng, style, length * 1.3)
        except TrajectoryError:
            continue
        chord = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(waypoints, axis=0), axis=1))])
        spline = make_interp_spline(chord, waypoints, k=3, bc_type="natural")
        dense_s = np.linspace(0.0, chord[-1], max(200, int(chord[-1] / 0.01)))
        dense = spline(dense_s)
        arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(dense, axis=0), axis=1))])
        if arc[-1] < length:
            continue
        wanted_arc = speed * times
        positions = np.stack([np.interp(wanted_arc, arc, dense[:, i]) for i in range(3)], axis=1)
        if style.planar:
            positions[:, 2] = style.height_range[0]
        if not np.all(scene.is_free(positions, style.room_margin * 0.8, style.obstacle_margin * 0.8)):
            continue
        # Heading of travel from a slightly ahead point on the dense path (defined even for one frame).
        ahead = np.stack([np.interp(wanted_arc + 0.05, arc, dense[:, i]) for i in range(2)], axis=1)
        travel_yaw = np.unwrap(np.arctan2(ahead[:, 1] - positions[:, 1], ahead[:, 0] - positions[:, 0]))
        # The body turns more smoothly than the path does at tight spline bends.
        travel_yaw = gaussian_filter1d(travel_yaw, sigma=0.6 * fps, mode="nearest")
        yaw = travel_yaw + _wander(rng, times, style.yaw_wander)
        pitch = _wander(rng, times, style.tilt_wander)
        roll = _wander(rng, times, style.tilt_wander)
        quats = Rotation.from_euler("ZYX", np.stack([yaw, pitch, roll], axis=1)).as_quat()
        quats[quats[:, 3] < 0] *= -1.0
        return positions, quats
    raise TrajectoryError(f"no collision-free {kind} trajectory of {n_frames} frames after {max_tries} tries")
