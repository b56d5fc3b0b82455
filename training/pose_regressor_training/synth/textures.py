"""Procedural, non-repeating surface textures.

Every face gets its own texture that spans the whole face once (no tiling: repeated
patterns make distant places look alike, which is exactly what a pose regressor must not
see). Each texture mixes large-scale structure (a hue of its own, a gradient, low-frequency
blotches, big shapes) with fine detail (high-frequency noise, small marks), so that views are
distinguishable both from afar and close up.
"""

from __future__ import annotations

import colorsys

import cv2
import numpy as np
from numpy.typing import NDArray

GOLDEN_RATIO_CONJUGATE = 0.618033988749895


def smooth_noise(
    rng: np.random.Generator, height: int, width: int, cell_px: float, channels: int
) -> NDArray[np.float32]:
    """Value noise in [-1, 1]: a random grid with one value per `cell_px` pixels, bicubically upsampled."""
    gh = max(2, int(np.ceil(height / cell_px)) + 1)
    gw = max(2, int(np.ceil(width / cell_px)) + 1)
    grid = rng.uniform(-1.0, 1.0, size=(gh, gw, channels)).astype(np.float32)
    up = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(up.reshape(height, width, channels), -1.0, 1.0)


def _shape_color(rng: np.random.Generator) -> tuple[float, float, float]:
    r, g, b = colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.3, 0.9), rng.uniform(0.15, 0.95))
    return (r, g, b)


def _draw_shapes(rng: np.random.Generator, img: NDArray[np.float32], px_per_m: float, count: int) -> None:
    h, w = img.shape[:2]
    for _ in range(count):
        color = _shape_color(rng)
        size = rng.uniform(0.15, 0.9) * px_per_m
        cx, cy = int(rng.uniform(0, w)), int(rng.uniform(0, h))
        kind = rng.integers(4)
        if kind == 0:
            cv2.circle(img, (cx, cy), int(size / 2), color, thickness=-1, lineType=cv2.LINE_AA)
        elif kind == 1:
            half_w, half_h = int(size / 2), int(rng.uniform(0.3, 1.0) * size / 2)
            cv2.rectangle(img, (cx - half_w, cy - half_h), (cx + half_w, cy + half_h), color, thickness=-1)
        elif kind == 2:
            angle = rng.uniform(0, np.pi)
            d = np.array([np.cos(angle), np.sin(angle)]) * size
            cv2.line(
                img,
                (int(cx - d[0]), int(cy - d[1])),
                (int(cx + d[0]), int(cy + d[1])),
                color,
                thickness=max(2, int(0.06 * px_per_m)),
                lineType=cv2.LINE_AA,
            )
        else:
            pts = (rng.uniform(-0.5, 0.5, size=(3, 2)) * size + [cx, cy]).astype(np.int32)
            cv2.fillPoly(img, [pts], color, lineType=cv2.LINE_AA)


def texels(length_m: float, px_per_m: float) -> int:
    """Texture pixels along a face side of `length_m` metres (at least 2)."""
    return max(2, int(np.ceil(length_m * px_per_m)))


def make_texture(
    rng: np.random.Generator, width_m: float, height_m: float, px_per_m: float, face_index: int, shade: float
) -> NDArray[np.uint8]:
    """RGB uint8 texture of ceil(width_m * px_per_m) x ceil(height_m * px_per_m) px (rows: v, cols: u)."""
    w, h = texels(width_m, px_per_m), texels(height_m, px_per_m)
    hue = (face_index * GOLDEN_RATIO_CONJUGATE + rng.uniform(-0.05, 0.05)) % 1.0
    base = np.array(
        colorsys.hsv_to_rgb(hue, rng.uniform(0.3, 0.65), rng.uniform(0.45, 0.75)), dtype=np.float32
    )
    img = np.broadcast_to(base, (h, w, 3)).copy()

    # Large-scale structure: a gradient in a random direction and metre-scale coloured blotches.
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = (np.cos(angle) * xx + np.sin(angle) * yy) / max(w, h)
    img *= (0.75 + 0.5 * (ramp - ramp.min()))[..., None]
    img += 0.18 * smooth_noise(rng, h, w, 1.2 * px_per_m, 3)
    area_m2 = width_m * height_m
    _draw_shapes(rng, img, px_per_m, count=int(np.clip(area_m2 * 1.2, 3, 60)))

    # Fine detail: decimetre and centimetre noise, so nearby views differ too.
    img += 0.10 * smooth_noise(rng, h, w, 0.12 * px_per_m, 1)
    img += 0.05 * smooth_noise(rng, h, w, 0.03 * px_per_m, 1)
    img *= shade
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
