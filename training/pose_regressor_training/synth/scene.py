"""Scene geometry: an axis-aligned room seen from inside, with axis-aligned boxes and pillars.

All coordinates are in the `map` frame (metres): x along the room's length, y along its
width, z up, the floor at z = 0 and the room centred on x = y = 0.

Faces are numbered: the six room faces first (inward), then six faces per box (outward).
Face `2*a + s` of a body lies on axis `a` (0 = x, 1 = y, 2 = z) at the body's lower (s = 0)
or upper (s = 1) bound. A point on a face has texture coordinates (u, v) in metres along
the face's first and second in-plane axes, measured from the face's lower corner.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from pose_regressor_training.synth.textures import make_texture

FloatArray = NDArray[np.float64]
IN_PLANE_AXES = ((1, 2), (0, 2), (0, 1))  # (u axis, v axis) for faces normal to x, y, z
# Fixed directional light baked into the textures, so that faces of different orientation differ.
LIGHT_DIRECTION = np.array([0.4, 0.25, 0.88]) / np.linalg.norm([0.4, 0.25, 0.88])


@dataclass(frozen=True)
class Box:
    lo: tuple[float, float, float]
    hi: tuple[float, float, float]

    def contains(self, points: FloatArray, margin: float = 0.0) -> NDArray[np.bool_]:
        lo, hi = np.asarray(self.lo) - margin, np.asarray(self.hi) + margin
        inside: NDArray[np.bool_] = np.all((points >= lo) & (points <= hi), axis=-1)
        return inside


@dataclass(frozen=True)
class SceneConfig:
    """The default room: 8 m x 6 m x 3 m with two pillars, four boxes on the floor and one hanging box."""

    room: Box = Box((-4.0, -3.0, 0.0), (4.0, 3.0, 3.0))
    obstacles: tuple[Box, ...] = (
        Box((-1.8, 0.8, 0.0), (-1.4, 1.2, 3.0)),
        Box((1.5, -1.5, 0.0), (1.9, -1.1, 3.0)),
        Box((2.6, 1.4, 0.0), (3.6, 2.6, 1.0)),
        Box((-3.6, -2.6, 0.0), (-2.8, -1.6, 0.7)),
        Box((-0.5, -2.8, 0.0), (0.6, -2.2, 0.9)),
        Box((-0.2, 2.3, 0.0), (0.8, 3.0, 1.6)),
        Box((0.5, 1.0, 2.3), (1.3, 1.6, 3.0)),
    )
    px_per_m: float = 64.0
    seed: int = 0


@dataclass
class Scene:
    """Geometry plus one texture per face, packed into one flat atlas for fast lookup."""

    config: SceneConfig = field(default_factory=SceneConfig)

    def __post_init__(self) -> None:
        cfg = self.config
        bodies = (cfg.room, *cfg.obstacles)
        self.box_lo = np.array([b.lo for b in cfg.obstacles], dtype=np.float32).reshape(-1, 3)
        self.box_hi = np.array([b.hi for b in cfg.obstacles], dtype=np.float32).reshape(-1, 3)
        self.room_lo = np.array(cfg.room.lo, dtype=np.float32)
        self.room_hi = np.array(cfg.room.hi, dtype=np.float32)
        rng = np.random.default_rng(cfg.seed)
        textures: list[NDArray[np.uint8]] = []
        origin_uv: list[tuple[float, float]] = []
        normal_axis: list[int] = []
        for body_index, body in enumerate(bodies):
            lo, hi = np.asarray(body.lo), np.asarray(body.hi)
            inward = body_index == 0
            for axis in range(3):
                ua, va = IN_PLANE_AXES[axis]
                for side in range(2):
                    normal = np.zeros(3)
                    normal[axis] = (1.0 if side == 0 else -1.0) if inward else (-1.0 if side == 0 else 1.0)
                    shade = 0.55 + 0.45 * abs(float(normal @ LIGHT_DIRECTION))
                    face_index = len(textures)
                    textures.append(
                        make_texture(rng, hi[ua] - lo[ua], hi[va] - lo[va], cfg.px_per_m, face_index, shade)
                    )
                    origin_uv.append((lo[ua], lo[va]))
                    normal_axis.append(axis)
        self.face_count = len(textures)
        self.face_normal_axis = np.array(normal_axis, dtype=np.int64)
        self.face_u_axis = np.array([IN_PLANE_AXES[a][0] for a in normal_axis], dtype=np.int64)
        self.face_v_axis = np.array([IN_PLANE_AXES[a][1] for a in normal_axis], dtype=np.int64)
        self.face_origin_uv = np.array(origin_uv, dtype=np.float32)
        self.face_width = np.array([t.shape[1] for t in textures], dtype=np.int64)
        self.face_height = np.array([t.shape[0] for t in textures], dtype=np.int64)
        sizes = self.face_width * self.face_height
        self.face_offset = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        rgb = np.concatenate([t.reshape(-1, 3) for t in textures])
        # Packed as one uint32 per texel (RGB + padding): a 1-D gather is much faster than (N, 3) rows.
        self.atlas = np.zeros((len(rgb), 4), dtype=np.uint8)
        self.atlas[:, :3] = rgb
        self._atlas_packed = self.atlas.view(np.uint32).reshape(-1)
        self.textures = textures

    @property
    def obstacles(self) -> tuple[Box, ...]:
        return self.config.obstacles

    def is_free(
        self, points: FloatArray, wall_margin: float | FloatArray, obstacle_margin: float
    ) -> NDArray[np.bool_]:
        """True where a point is inside the room (by `wall_margin`, a scalar or per-axis (3,)) and
        clear of every obstacle by `obstacle_margin`."""
        wall_margin = np.broadcast_to(np.asarray(wall_margin, dtype=float), (3,))
        inside: NDArray[np.bool_] = np.all(
            (points >= np.asarray(self.config.room.lo) + wall_margin)
            & (points <= np.asarray(self.config.room.hi) - wall_margin),
            axis=-1,
        )
        for box in self.obstacles:
            inside &= ~box.contains(points, obstacle_margin)
        return inside

    def intersect(
        self, origins: NDArray[np.float32], directions: NDArray[np.float32]
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """First hit of each ray (N, 3) from inside the room: distance along `directions` and face index."""
        with np.errstate(divide="ignore", invalid="ignore"):
            inv_d = np.float32(1.0) / directions
            # Room, seen from inside: the exit distance on each axis; the nearest axis is the face.
            far_bound = np.where(directions > 0, self.room_hi, self.room_lo)
            t_axis = (far_bound - origins) * inv_d
            t_axis = np.where(np.isfinite(t_axis), t_axis, np.inf)
            axis = np.argmin(t_axis, axis=1)
            rows = np.arange(len(origins))
            t_best = t_axis[rows, axis]
            face = 2 * axis + (directions[rows, axis] > 0)
            if len(self.box_lo):
                # Slab test against every box at once, one (N, B) array per axis (numpy reduces
                # a length-3 inner axis slowly, so the three axes are combined explicitly).
                t_enter, t_exit = [], []
                for a in range(3):
                    t1 = (self.box_lo[None, :, a] - origins[:, a, None]) * inv_d[:, a, None]
                    t2 = (self.box_hi[None, :, a] - origins[:, a, None]) * inv_d[:, a, None]
                    t_enter.append(np.fmin(t1, t2))
                    t_exit.append(np.fmax(t1, t2))
                t_near = np.maximum(np.maximum(t_enter[0], t_enter[1]), t_enter[2])
                t_far = np.minimum(np.minimum(t_exit[0], t_exit[1]), t_exit[2])
                hit = (t_near <= t_far) & (t_near > 0)
                t_near = np.where(hit, t_near, np.inf)
                box = np.argmin(t_near, axis=1)
                t_box = t_near[rows, box]
                closer = np.flatnonzero(t_box < t_best)
                if len(closer):
                    hit_box = box[closer]
                    # The entry face lies on the axis whose slab is entered last.
                    enter = np.stack([t_enter[a][closer, hit_box] for a in range(3)], axis=1)
                    box_axis = np.argmax(enter, axis=1)
                    # A ray travelling +axis enters a box through its lower face.
                    side = directions[closer, box_axis] < 0
                    face[closer] = 6 + 6 * hit_box + 2 * box_axis + side
                    t_best[closer] = t_box[closer]
        return t_best, face

    def shade(self, points: NDArray[np.float32], face: NDArray[np.int64]) -> NDArray[np.uint8]:
        """Texture colour (N, 3) uint8 of surface points lying on the given faces."""
        rows = np.arange(len(points))
        u = points[rows, self.face_u_axis[face]] - self.face_origin_uv[face, 0]
        v = points[rows, self.face_v_axis[face]] - self.face_origin_uv[face, 1]
        ppm = np.float32(self.config.px_per_m)
        iu = np.clip((u * ppm).astype(np.int64), 0, self.face_width[face] - 1)
        iv = np.clip((v * ppm).astype(np.int64), 0, self.face_height[face] - 1)
        texels = self._atlas_packed[self.face_offset[face] + iv * self.face_width[face] + iu]
        rgb: NDArray[np.uint8] = texels.view(np.uint8).reshape(-1, 4)[:, :3]
        return rgb

    def texture_at(self, face: int, u_m: float, v_m: float) -> NDArray[np.uint8]:
        """Texture colour of one face at (u, v) metres from its lower corner (for tests and tools)."""
        tex = self.textures[face]
        ppm = self.config.px_per_m
        texel: NDArray[np.uint8] = tex[
            min(int(v_m * ppm), tex.shape[0] - 1), min(int(u_m * ppm), tex.shape[1] - 1)
        ]
        return texel
