"""`pose-train synth --movable-box SHARE`: training data in which a box does not stay put.

A model trained in a static room may use any object as a landmark; the default model does use the
1 m floor box, and its error doubles when that box stands elsewhere (`--condition box_moved`)
while its std hardly rises. Rooms change, so in a share of the training trajectories the same box
(`MOVED_BOX_INDEX`, same size and textures) stands at a random place on the floor instead. Val and
test trajectories keep the room as it is, so their numbers stay comparable with a dataset rendered
without this option, and the place `box_moved` tests (`MOVED_BOX`) is never drawn: that test stays
a view the model has not seen.

The placements have their own random stream (seeded from `--seed`): the trajectories, splits,
lighting and noise are those of the same dataset without `--movable-box`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from pose_regressor_training.data.folder import FrameRecord
from pose_regressor_training.synth.conditions import MOVED_BOX, MOVED_BOX_CLEARANCE, MOVED_BOX_INDEX
from pose_regressor_training.synth.scene import Box, SceneConfig
from pose_regressor_training.synth.textures import texels

PLACEMENT_STREAM = 0x6D6F7665  # "move": the placements' stream, apart from the trajectories' one
WALL_GAP = 0.1  # m between a placed box and the walls
OBSTACLE_GAP = 0.1  # m between a placed box and every other obstacle
HELD_OUT_GAP = 0.3  # m between a placed box and the test placement (MOVED_BOX): no near-copies of it
MAX_TRIES = 200  # placements drawn per trajectory before the box stays at home


def place_boxes(frames: Sequence[FrameRecord], scene: SceneConfig, share: float, seed: int) -> dict[int, Box]:
    """The movable box's place per train trajectory (sequence id) where it stands elsewhere.

    Each train trajectory is chosen with probability `share`; a chosen one gets a random floor
    place clear of the walls, the other obstacles, the test placement and (by the clearance of
    `box_moved`) every base position of the trajectory. One without such a place after `MAX_TRIES`
    draws keeps the box at home."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"--movable-box must be a share in [0, 1], got {share}")
    rng = np.random.default_rng([seed, PLACEMENT_STREAM])
    bases: dict[int, list[NDArray[np.float64]]] = {}
    for frame in frames:
        if frame.split == "train":
            bases.setdefault(frame.sequence, []).append(np.asarray(frame.translation, dtype=float))
    placed: dict[int, Box] = {}
    for sequence in sorted(bases):
        if share <= 0.0 or rng.random() >= share:
            continue
        box = _draw_place(rng, scene, np.stack(bases[sequence]))
        if box is not None:
            placed[sequence] = box
    return placed


def _draw_place(rng: np.random.Generator, scene: SceneConfig, bases: NDArray[np.float64]) -> Box | None:
    home = scene.obstacles[MOVED_BOX_INDEX]
    size = np.subtract(home.hi, home.lo)
    room_lo, room_hi = np.asarray(scene.room.lo), np.asarray(scene.room.hi)
    others = [b for i, b in enumerate(scene.obstacles) if i != MOVED_BOX_INDEX]
    texel = 1.0 / scene.px_per_m
    for _ in range(MAX_TRIES):
        lo = np.array(home.lo, dtype=float)
        drawn = rng.uniform(room_lo[:2] + WALL_GAP, room_hi[:2] - WALL_GAP - size[:2])
        lo[:2] = np.round(drawn / texel) * texel  # on the texel grid: hi - lo stays exactly the size
        box = Box(_point(lo), _point(lo + size))
        if _texels(box, scene.px_per_m) != _texels(home, scene.px_per_m):
            continue  # a face one texel wider would draw every later texture anew: another room
        if any(_overlap(box, other, OBSTACLE_GAP) for other in others):
            continue
        if _overlap(box, MOVED_BOX, HELD_OUT_GAP):
            continue
        if np.any(box.contains(bases, MOVED_BOX_CLEARANCE)):
            continue
        return box
    return None


def _overlap(a: Box, b: Box, gap: float) -> bool:
    """Whether the boxes come closer than `gap` in the floor plane (x, y)."""
    return all(a.lo[k] < b.hi[k] + gap and b.lo[k] < a.hi[k] + gap for k in range(2))


def _texels(box: Box, px_per_m: float) -> tuple[int, ...]:
    """The box's size in texels per axis, as `make_texture` sizes its faces."""
    return tuple(texels(box.hi[k] - box.lo[k], px_per_m) for k in range(3))


def _point(values: NDArray[np.float64]) -> tuple[float, float, float]:
    """Plain floats (dataset.yaml records the places; YAML cannot write numpy scalars)."""
    x, y, z = (float(v) for v in values)
    return (x, y, z)
