"""Telling a user, during `fit`, that the model no longer learns from the images.

A loss with learned weights on relative terms (MapNet's `relative`, VLocNet's
`geometric_consistency`) has a trap: a model that predicts the same pose for every image gets the
relative terms down to the true motion between frames, which is small when the frames of a tuple
are close (`data.tuple_skip` 1), and the learned weights then favour those terms ever more. Seen in
the ablation (docs/results.md): in `relative_learned_skip1` every val prediction was the same pose
from the second epoch on, and 14 more epochs did not move it; in `geometric_learned_skip1` the
rotation alone stayed at two headings (val 98-105 deg) while the position learned; in
`siamese_lam1_m1_skip5` (the metric term at a fixed embedding scale) the position never learned
while the rotation did; fixed weights are no way out when they favour the relative terms
(`geometric_w10_skip1`, odometry weight 10: one pose for every image from the first epoch). Such a
run only wastes its hours, so `fit` says so once it shows at two validations in a row from epoch 3
on, once the run has taken `FIRST_STEP_JUDGED` optimizer steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.spatial.transform import Rotation

from pose_regressor import pose

#: A val median error at least this share of the constant mean pose's counts as no better.
NO_BETTER_SHARE = 0.9
#: A run that learns can start slowly: `relative_w1_k2_skip1` validated at 0.93 of the constant
#: pose's error at epoch 2 and then learned to 0.34 m, and a tiny run is still there after an epoch
#: or two. So validations before this epoch do not count, and it takes two in a row.
FIRST_EPOCH_JUDGED = 3
VALIDATIONS_IN_A_ROW = 2
#: A model learns per optimizer step, and an epoch of a small real set is a few of them: on
#: instant-ngp's fox (32 training photographs, 2 steps an epoch) every run was at the constant
#: pose's rotation error at epochs 4 and 6 and went on to half of it by epoch 16 (32 steps) and a
#: third by epoch 30. The ablation's stuck runs stayed stuck past 800 steps (2 epochs of 400). So
#: validations before this many steps do not count either.
FIRST_STEP_JUDGED = 500


def rms_spread(translations: NDArray[np.floating]) -> float:
    """RMS distance of positions [N, 3] from their mean (0 for one position or none)."""
    if len(translations) == 0:
        return 0.0
    centred = translations - translations.mean(axis=0)
    return float(np.sqrt((centred**2).sum(axis=1).mean()))


@dataclass(frozen=True)
class ConstantPoseErrors:
    """Val median errors of predicting the training set's mean pose for every frame: what a model
    that ignores its images gets."""

    translation_m: float
    rotation_deg: float

    @classmethod
    def of(
        cls,
        train_t: NDArray[np.floating],
        train_q_xyzw: NDArray[np.floating],
        val_t: NDArray[np.floating],
        val_q_xyzw: NDArray[np.floating],
    ) -> ConstantPoseErrors:
        mean_t = train_t.mean(axis=0)
        mean_q = Rotation.from_quat(train_q_xyzw).mean().as_quat()
        return cls(
            float(np.median(pose.translation_error(val_t, mean_t))),
            float(np.median(pose.rotation_error_deg(val_q_xyzw, mean_q))),
        )


def loss_weights(loss_parts: dict[str, float]) -> dict[str, float]:
    """The weights e^-s of a loss's learned log-variances (parts named `s_<term>`), by term."""
    return {key[2:]: math.exp(-value) for key, value in loss_parts.items() if key.startswith("s_")}


class LearningWatch:
    """Fed every validation's medians; warns once when the translation or the rotation has been no
    better than the constant mean pose at `VALIDATIONS_IN_A_ROW` validations in a row, counting
    from epoch `FIRST_EPOCH_JUDGED` and `FIRST_STEP_JUDGED` optimizer steps."""

    def __init__(
        self,
        constant: ConstantPoseErrors,
        learned_weights: bool = True,
        learned_metric_scale: bool = False,
        length_unit: str = "m",
    ) -> None:
        """`learned_weights`: whether the loss learns its weights (its `s_*` parts);
        `learned_metric_scale`: whether `siamese_metric` learns its embedding scale. They decide what
        the warning advises. `length_unit`: what the positions are in ("units": an unscaled import)."""
        self.constant = constant
        self.length_unit = length_unit
        self.learned_weights = learned_weights
        self.learned_metric_scale = learned_metric_scale
        self.recent: list[tuple[int, dict[str, float]]] = []
        self.warned = False

    def check(
        self, epoch: int, metrics: dict[str, float], loss_parts: dict[str, float], steps: int | None = None
    ) -> str | None:
        """`epoch` 1-based; `metrics` the val medians (none between validations); `steps`: the
        optimizer steps taken so far (None: not counted)."""
        if not metrics or self.warned or epoch < FIRST_EPOCH_JUDGED:
            return None
        if steps is not None and steps < FIRST_STEP_JUDGED:
            return None
        self.recent = [*self.recent, (epoch, metrics)][-VALIDATIONS_IN_A_ROW:]
        if len(self.recent) < VALIDATIONS_IN_A_ROW:
            return None
        stuck = [
            (
                f"{what} error ({', '.join(f'{m[key]:.3g}' for _, m in self.recent)}{unit})",
                f"{constant:.3g}{unit}",
            )
            for what, key, unit, constant in (
                ("position", "median_translation_m", f" {self.length_unit}", self.constant.translation_m),
                ("rotation", "median_rotation_deg", " deg", self.constant.rotation_deg),
            )
            if constant > 0 and all(m[key] >= NO_BETTER_SHARE * constant for _, m in self.recent)
        ]
        if not stuck:
            return None
        self.warned = True
        epochs = " and ".join(str(e) for e, _ in self.recent)
        errors, constants = " and ".join(e for e, _ in stuck), ", ".join(c for _, c in stuck)
        message = (
            f"fit: warning: at epochs {epochs} the val {errors} {'are' if len(stuck) > 1 else 'is'} no "
            f"better than predicting the training set's mean pose for every frame ({constants}): the "
            "model has stopped learning from the images, and training rarely recovers from this"
        )
        return ". ".join([message, *self.hints(loss_parts)])

    def hints(self, loss_parts: dict[str, float]) -> list[str]:
        """What the loss's parts say about the way out: its weights, and advice for its terms."""
        hints = []
        weights = loss_weights(loss_parts)
        if weights:
            label = "Learned loss weights now" if self.learned_weights else "Loss weights (fixed)"
            hints.append(f"{label}: " + ", ".join(f"{t} {w:.3g}" for t, w in weights.items()))
        if any(key.endswith(("_rel", "_odom")) for key in loss_parts):
            way_out = "fix the weights (learn_weights: false)" if self.learned_weights else "weight them less"
            hints.append(
                "Relative terms on frames close in time are met by a constant prediction: "
                f"raise data.tuple_skip, or {way_out}"
            )
        if "metric" in loss_parts and not self.learned_metric_scale:
            hints.append(
                "With siamese_metric, also learn the embedding distance's scale "
                "(learn_embedding_scale: true): at a fixed scale the metric term shrinks the "
                "embedding the pose head reads"
            )
        return hints
