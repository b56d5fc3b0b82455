"""Position variance that grows away from where the model was trained (numpy, ROS-free).

A pose regressor trained on a few hundred frames knows the poses near its training path; between
and beyond its stretches it interpolates, and its own spread (MC dropout, a variance head) does not
grow there. `DistancePrior` adds k d^2 to each position axis' raw variance, d the distance from the
estimated position to the nearest training position, before the calibration: a std that grows as
sqrt(k) times the distance from the training path, as a Gaussian-process prior's does away from its
data. On the small sets of docs/results.md ("Distance to the training path") it ranked the position
errors better than the model's own std; on the dense synthetic room it adds nothing, so recipes
choose k (`model.position_distance_variance`; 0: off).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

# A bundle's train_positions.npy holds at most this many positions (2.4 MB as float64): a nearest
# neighbour over them is a few milliseconds per pose at worst on a robot's CPU.
MAX_TRAINING_POSITIONS = 100_000
MAX_VARIANCE_PER_SQUARED_DISTANCE = 1e6
# Distances of this many positions at once: rows x positions stays under 4M floats (32 MB).
_CHUNK_ELEMENTS = 4_000_000


@dataclass(frozen=True, eq=False)
class DistancePrior:
    """``positions`` (N, 3): the training positions (metres, or the model's units); ``k``: variance
    added per squared distance (dimensionless: a std of sqrt(k) times the distance)."""

    positions: FloatArray
    k: float

    def __post_init__(self) -> None:
        positions = np.asarray(self.positions, dtype=np.float64)
        if (
            positions.ndim != 2
            or positions.shape[1] != 3
            or not 1 <= len(positions) <= MAX_TRAINING_POSITIONS
        ):
            raise ValueError(
                f"training positions must have shape (N, 3) with 1 <= N <= {MAX_TRAINING_POSITIONS}, "
                f"got {positions.shape}"
            )
        if not np.isfinite(positions).all():
            raise ValueError("training positions must be finite")
        if not (math.isfinite(self.k) and 0.0 < self.k <= MAX_VARIANCE_PER_SQUARED_DISTANCE):
            raise ValueError(
                f"position_distance_variance must be in (0, {MAX_VARIANCE_PER_SQUARED_DISTANCE:g}], "
                f"got {self.k}"
            )
        object.__setattr__(self, "positions", positions)

    def nearest_distances(self, points: FloatArray) -> FloatArray:
        """Distance of each point (M, 3) to its nearest training position (M,)."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        out = np.empty(len(points))
        chunk = max(1, _CHUNK_ELEMENTS // len(self.positions))
        for start in range(0, len(points), chunk):
            diff = points[start : start + chunk, None, :] - self.positions[None, :, :]
            out[start : start + chunk] = np.sqrt(np.min(np.einsum("mnk,mnk->mn", diff, diff), axis=1))
        return out

    def variance(self, position: FloatArray) -> float:
        """k d^2 for one position (3,): what each position axis' raw variance gains."""
        return float(self.k * self.nearest_distances(position)[0] ** 2)
