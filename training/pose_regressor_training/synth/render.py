"""Exact ray-cast rendering of the scene through the pinhole cameras of a rig."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.spatial.transform import Rotation

from pose_regressor.rig import Rig
from pose_regressor_training.synth.conditions import apply_light_gain, covered_image
from pose_regressor_training.synth.scene import Scene

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Lighting:
    """Per-frame photometric variation applied to the texture colour c in [0, 1]:
    out = brightness * ((c ** gamma - 0.5) * contrast + 0.5), then clipped."""

    brightness: float = 1.0
    contrast: float = 1.0
    gamma: float = 1.0

    @classmethod
    def random(cls, rng: np.random.Generator, strength: float = 1.0) -> Lighting:
        return cls(
            brightness=float(np.exp(rng.uniform(-0.25, 0.25) * strength)),
            contrast=float(np.exp(rng.uniform(-0.2, 0.2) * strength)),
            gamma=float(np.exp(rng.uniform(-0.25, 0.25) * strength)),
        )

    def lookup_table(self) -> NDArray[np.uint8]:
        c = np.arange(256, dtype=np.float64) / 255.0
        out = self.brightness * ((c**self.gamma - 0.5) * self.contrast + 0.5)
        return (np.clip(out, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


@dataclass(frozen=True)
class RenderedView:
    """One camera's view: the image and, for tests and tools, the geometry behind every pixel."""

    image: NDArray[np.uint8]  # (H, W, 3) RGB
    depth: NDArray[np.float32]  # (H, W) distance along the optical axis (z), metres
    face: NDArray[np.int64]  # (H, W) face index hit by each pixel's ray


class RigRenderer:
    """Renders all cameras of a rig at once for a given `T_map_base`."""

    def __init__(self, scene: Scene, rig: Rig) -> None:
        self.scene = scene
        self.rig = rig
        # Pixel rays in base_link, fixed per camera: R_base_cam @ ray_cam.
        self._rays_base: list[FloatArray] = []
        for cam in rig.cameras:
            rays_cam = cam.intrinsics.pixel_rays().reshape(-1, 3)
            self._rays_base.append(rays_cam @ cam.rotation_matrix().T)
        self._sizes = [len(r) for r in self._rays_base]
        self._all_rays_base = np.concatenate(self._rays_base)
        self._cam_index = np.repeat(np.arange(len(rig.cameras)), self._sizes)
        self._cam_t = np.stack([cam.translation for cam in rig.cameras])

    def render(
        self,
        t_map_base: FloatArray,
        q_map_base: FloatArray,
        lighting: Lighting | None = None,
        noise_std: float = 0.0,
        rng: np.random.Generator | None = None,
        *,
        light_gain: float = 1.0,
        covered: str | None = None,
    ) -> list[RenderedView]:
        """Views of every camera, in rig order. `noise_std` is Gaussian sensor noise in 8-bit levels;
        `light_gain` scales the light before the noise (clipped); the `covered` camera sees black."""
        r_map_base = Rotation.from_quat(q_map_base).as_matrix()
        dirs = (self._all_rays_base @ r_map_base.T).astype(np.float32)
        cam_origins = (self._cam_t @ r_map_base.T + t_map_base).astype(np.float32)
        origins = cam_origins[self._cam_index]
        # Rays are not normalized: with optical-frame z = 1, the hit distance t is the depth.
        t_hit, face = self.scene.intersect(origins, dirs)
        points = origins + t_hit[:, None] * dirs
        colours = self.scene.shade(points, face)
        if lighting is not None:
            colours = lighting.lookup_table()[colours]
        if light_gain != 1.0:
            colours = apply_light_gain(colours, light_gain)
        noise_rng = rng if rng is not None else np.random.default_rng()
        if noise_std > 0:
            noisy = colours.astype(np.float32) + noise_rng.normal(0.0, noise_std, colours.shape).astype(
                np.float32
            )
            colours = np.clip(noisy + 0.5, 0, 255).astype(np.uint8)
        views = []
        start = 0
        for cam, size in zip(self.rig.cameras, self._sizes, strict=True):
            h, w = cam.intrinsics.height, cam.intrinsics.width
            sl = slice(start, start + size)
            # Drawn after the sensor noise: the other cameras' images are those of the nominal scene.
            image = (
                covered_image((h, w, 3), noise_rng) if cam.name == covered else colours[sl].reshape(h, w, 3)
            )
            views.append(
                RenderedView(
                    image=np.ascontiguousarray(image),
                    depth=t_hit[sl].reshape(h, w),
                    face=face[sl].reshape(h, w),
                )
            )
            start += size
        return views
