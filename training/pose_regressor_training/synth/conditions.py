"""Unfamiliar conditions for `pose-train synth`: what a model trained on the nominal scene never saw.

A render condition changes the images of the same trajectories (same seed, same poses):
- `lights_off`: the light scaled down to `LIGHTS_OFF_GAIN`;
- `overexposed`: the light scaled up by `OVEREXPOSED_GAIN`, clipped at white;
- `camera_covered`: one camera sees black (a little sensor noise near zero);
- `box_moved`: one floor box stands elsewhere (frames whose base would be inside it are left out;
  the others keep their index, light and noise).

A region (`x>1.5`) is a property of a dataset, not of its images: `--exclude-region` keeps the train
and val trajectories out of it, `--inside-region` keeps every trajectory inside it (a test set of
views the first dataset never trained on).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from pose_regressor_training.synth.scene import Box, SceneConfig

CONDITIONS = ("nominal", "lights_off", "overexposed", "camera_covered", "box_moved")
LIGHTS_OFF_GAIN = 0.12  # a dark room: about an eighth of the nominal light
OVEREXPOSED_GAIN = 3.5  # most of the scene clips at white
COVERED_NOISE_STD = 2.0  # 8-bit levels: a covered lens reads near zero, not exactly zero
MOVED_BOX_INDEX = 2  # the 1 m high floor box in the +x +y corner...
MOVED_BOX = Box((0.6, -0.6, 0.0), (1.6, 0.6, 1.0))  # ...now near the middle of the room
MOVED_BOX_CLEARANCE = 0.2  # m: frames whose base comes closer to the moved box are left out
AXES = "xyz"
_REGION = re.compile(r"^\s*([xyz])\s*([<>])\s*([-+]?(?:\d+\.?\d*|\.\d+))\s*$")


@dataclass(frozen=True)
class Condition:
    """One named condition and what it changes: light gain, a covered camera, the scene's boxes."""

    name: str = "nominal"
    covered_camera: str = "front"  # used by camera_covered only

    def __post_init__(self) -> None:
        if self.name not in CONDITIONS:
            raise ValueError(f"unknown condition {self.name!r}; choose one of {', '.join(CONDITIONS)}")

    @property
    def light_gain(self) -> float:
        return {"lights_off": LIGHTS_OFF_GAIN, "overexposed": OVEREXPOSED_GAIN}.get(self.name, 1.0)

    @property
    def covers(self) -> str | None:
        """The covered camera's name, or None."""
        return self.covered_camera if self.name == "camera_covered" else None

    def render_scene(self, planned: SceneConfig) -> SceneConfig:
        """The scene the images are rendered in (trajectories are planned in `planned`)."""
        return with_moved_box(planned, MOVED_BOX) if self.name == "box_moved" else planned

    def keeps(self, positions: NDArray[np.float64]) -> NDArray[np.bool_]:
        """Which planned base positions (N, 3) can be rendered: not inside (or at) a moved box."""
        if self.name != "box_moved":
            return np.ones(len(positions), dtype=bool)
        kept: NDArray[np.bool_] = ~MOVED_BOX.contains(positions, MOVED_BOX_CLEARANCE)
        return kept

    def describe(self) -> dict[str, object]:
        """What dataset.yaml records about the condition."""
        info: dict[str, object] = {"name": self.name}
        if self.light_gain != 1.0:
            info["light_gain"] = self.light_gain
        if self.covers is not None:
            info["covered_camera"] = self.covers
        if self.name == "box_moved":
            info["moved_box"] = {"index": MOVED_BOX_INDEX, "lo": list(MOVED_BOX.lo), "hi": list(MOVED_BOX.hi)}
        return info


def with_moved_box(scene: SceneConfig, box: Box) -> SceneConfig:
    """`scene` with its movable box (`MOVED_BOX_INDEX`) standing at `box` instead."""
    obstacles = list(scene.obstacles)
    obstacles[MOVED_BOX_INDEX] = box
    return replace(scene, obstacles=tuple(obstacles))


def apply_light_gain(colours: NDArray[np.uint8], gain: float) -> NDArray[np.uint8]:
    """Colours scaled by `gain`, rounded and clipped to [0, 255] (an exposure change)."""
    scaled = np.clip(colours.astype(np.float32) * np.float32(gain) + np.float32(0.5), 0, 255)
    gained: NDArray[np.uint8] = scaled.astype(np.uint8)
    return gained


def covered_image(shape: tuple[int, ...], rng: np.random.Generator) -> NDArray[np.uint8]:
    """A covered camera's image: |N(0, COVERED_NOISE_STD)| levels, near black."""
    noise = np.abs(rng.normal(0.0, COVERED_NOISE_STD, shape)) + 0.5
    image: NDArray[np.uint8] = np.clip(noise, 0, 255).astype(np.uint8)
    return image


@dataclass(frozen=True)
class Region:
    """The half of the room on one side of an axis-aligned plane: `x>1.5` is every point with x > 1.5 m."""

    axis: int
    above: bool
    bound: float

    @classmethod
    def parse(cls, text: str) -> Region:
        match = _REGION.match(text)
        if match is None:
            raise ValueError(
                f"a region is AXIS>METRES or AXIS<METRES with AXIS x, y or z (e.g. x>1.5), got {text!r}"
            )
        axis, sign, bound = match.groups()
        return cls(AXES.index(axis), sign == ">", float(bound))

    def __str__(self) -> str:
        return f"{AXES[self.axis]}{'>' if self.above else '<'}{self.bound:g}"

    def contains(self, points: NDArray[np.float64]) -> NDArray[np.bool_]:
        """Which points (N, 3) lie in the region."""
        values = np.asarray(points)[..., self.axis]
        inside: NDArray[np.bool_] = values > self.bound if self.above else values < self.bound
        return inside
