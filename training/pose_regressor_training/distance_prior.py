"""A checkpoint's distance prior (`pose_regressor.distance_prior`): its training positions, read
from the train split it was trained on, and its `model.position_distance_variance`."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from pose_regressor.distance_prior import (
    MAX_TRAINING_POSITIONS,
    MAX_VARIANCE_PER_SQUARED_DISTANCE,
    DistancePrior,
)
from pose_regressor_training.checkpoint import Checkpoint
from pose_regressor_training.data.sources import load_dataset


def distance_prior_of(
    trained: Checkpoint, data_root: Path | None = None, k: float | None = None
) -> DistancePrior | None:
    """None where `k` (default: the model's `position_distance_variance`) is 0; else its prior,
    the positions of the train split of the dataset it was trained on (or of `data_root`, a copy of
    it somewhere else, when that one cannot be read), every n-th when there are more than the
    bundle holds.

    Raises ValueError (one line) when neither has a train split, or `k` is out of range."""
    k = trained.model_config.position_distance_variance if k is None else k
    if not (math.isfinite(k) and 0.0 <= k <= MAX_VARIANCE_PER_SQUARED_DISTANCE):
        raise ValueError(
            f"the position distance variance must be in [0, {MAX_VARIANCE_PER_SQUARED_DISTANCE:g}], got {k}"
        )
    if k == 0.0:
        return None
    data = trained.config.data
    roots = [Path(trained.dataset.root), *([data_root] if data_root is not None else [])]
    problems = []
    for root in dict.fromkeys(roots):
        try:
            frames = load_dataset(trained.dataset.kind, root, "train", **data.options)
            positions = frames.select_cameras(data.cameras).translations()
        except (OSError, ValueError) as exc:
            problems.append(f"{root}: {exc}")
            continue
        if len(positions) == 0:
            problems.append(f"{root}: the train split has no frames")
            continue
        step = -(-len(positions) // MAX_TRAINING_POSITIONS)  # ceil: at most the bundle's limit
        return DistancePrior(np.asarray(positions[::step], dtype=np.float64), k)
    raise ValueError(
        f"model.position_distance_variance {k:g} needs the training positions, and no train split "
        f"could be read ({'; '.join(problems)}): keep the training data where fit read it "
        "(eval-checkpoint also tries --data), or pass --distance-variance 0 to go without the prior "
        "(it is a recipe choice, not a weight)"
    )
