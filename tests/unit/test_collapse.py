"""`fit` says when the model stops learning from the images: the relative-loss trap of the ablation."""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial.transform import Rotation

from pose_regressor_training.collapse import (
    FIRST_EPOCH_JUDGED,
    FIRST_STEP_JUDGED,
    NO_BETTER_SHARE,
    ConstantPoseErrors,
    LearningWatch,
    loss_weights,
    rms_spread,
)

# the train losses of the collapsed ablation run (relative_learned_skip1) at epoch 4
COLLAPSED_LOSS = {"total": 3.932, "t": 3.411, "q": 0.854, "t_rel": 0.103, "q_rel": 0.022,
                  "s_t": 1.221, "s_q": -0.155, "s_t_rel": -2.223, "s_q_rel": -2.826}  # fmt: skip
CONSTANT = ConstantPoseErrors(translation_m=2.2, rotation_deg=90.0)


def medians(t: float, r: float) -> dict[str, float]:
    return {"median_translation_m": t, "median_rotation_deg": r}


def test_the_spread_is_the_rms_distance_from_the_mean() -> None:
    square = np.array([[1.0, 1.0, 5.0], [-1.0, 1.0, 5.0], [-1.0, -1.0, 5.0], [1.0, -1.0, 5.0]])
    assert math.isclose(rms_spread(square), math.sqrt(2.0))
    assert rms_spread(square[:1]) == 0.0 and rms_spread(np.zeros((0, 3))) == 0.0


def test_the_constant_pose_errors_are_those_of_the_training_mean_pose() -> None:
    train_t = np.array([[0.0, 0.0, 1.0], [2.0, 0.0, 1.0]])  # mean (1, 0, 1)
    train_q = Rotation.from_euler("z", [[-10.0], [10.0]], degrees=True).as_quat()  # mean: identity
    val_t = np.array([[1.0, 3.0, 1.0], [1.0, 0.0, 5.0], [4.0, 0.0, 1.0]])  # 3, 4, 3 m away
    val_q = Rotation.from_euler("z", [[30.0], [40.0], [-50.0]], degrees=True).as_quat()
    errors = ConstantPoseErrors.of(train_t, train_q, val_t, val_q)
    assert math.isclose(errors.translation_m, 3.0)
    assert math.isclose(errors.rotation_deg, 40.0, abs_tol=1e-9)


def test_a_collapsed_run_is_named_at_its_second_judged_validation_once() -> None:
    watch = LearningWatch(CONSTANT)
    assert watch.check(1, {}, COLLAPSED_LOSS) is None  # no validation this epoch
    assert watch.check(2, medians(2.22, 82.6), COLLAPSED_LOSS) is None  # before FIRST_EPOCH_JUDGED
    assert watch.check(4, medians(2.23, 97.6), COLLAPSED_LOSS) is None  # one validation is not enough
    warning = watch.check(6, medians(2.23, 101.8), COLLAPSED_LOSS)
    assert warning is not None and "\n" not in warning
    assert warning.startswith(
        "fit: warning: at epochs 4 and 6 the val position error (2.23, 2.23 m) and rotation error "
        "(97.6, 102 deg) are no better than predicting the training set's mean pose for every frame "
        "(2.2 m, 90 deg)"
    )
    # e^-s: the relative rotation outweighs the absolute translation 57-fold
    assert "t 0.295" in warning and "t_rel 9.23" in warning and "q_rel 16.9" in warning
    assert "raise data.tuple_skip" in warning and "learn_weights: false" in warning
    assert "learn_embedding_scale" not in warning  # no metric term
    assert watch.check(8, medians(2.23, 102.1), COLLAPSED_LOSS) is None  # said once


def test_a_tiny_run_that_has_not_started_is_not_flagged_before_epoch_3() -> None:
    watch = LearningWatch(CONSTANT)
    assert all(watch.check(e, medians(5.0, 170.0), {"t": 1.0}) is None for e in (1, 2, FIRST_EPOCH_JUDGED))


def test_a_small_real_set_is_not_judged_before_it_has_taken_enough_steps() -> None:
    # instant-ngp's fox: 32 photographs, 2 optimizer steps an epoch; val rotation 68.7 and 33.9 deg
    # at epochs 4 and 6 against the constant pose's 33.3, then 17.5 deg at epoch 16
    watch = LearningWatch(ConstantPoseErrors(3.18, 33.3), length_unit="units")
    assert watch.check(4, medians(2.79, 68.7), {"t": 1.0}, steps=8) is None
    assert watch.check(6, medians(2.23, 33.9), {"t": 1.0}, steps=12) is None
    assert watch.check(16, medians(1.22, 17.5), {"t": 1.0}, steps=32) is None
    # the same errors after enough steps are a run that has stopped learning; in the set's units
    late = LearningWatch(ConstantPoseErrors(3.18, 33.3), length_unit="units")
    assert late.check(4, medians(3.2, 68.7), {"t": 1.0}, steps=FIRST_STEP_JUDGED) is None
    warning = late.check(6, medians(3.3, 33.9), {"t": 1.0}, steps=FIRST_STEP_JUDGED + 2)
    assert warning is not None
    assert "position error (3.2, 3.3 units) and rotation error (68.7, 33.9 deg)" in warning


def test_a_slow_start_that_then_learns_is_not_flagged() -> None:
    # relative_w1_k2_skip1's first validations: 2.11 m (0.96 of the constant's), then 1.70 m
    watch = LearningWatch(CONSTANT)
    losses = {"total": 1.0, "t": 1.0, "q": 0.1, "t_rel": 0.9, "q_rel": 0.05}
    for epoch, (t, r) in enumerate([(2.11, 25.2), (1.70, 13.1), (1.35, 9.2), (0.46, 7.5)], start=1):
        assert watch.check(2 * epoch, medians(t, r), losses) is None


def test_only_the_stuck_quantity_is_named_and_fixed_weights_get_no_weights() -> None:
    # geometric_learned_skip1: the position learned, the rotation stayed at two headings
    watch = LearningWatch(CONSTANT)
    losses = {"total": 3.0, "t": 0.8, "q": 0.75, "t_odom": 0.4, "q_odom": 0.02}
    assert watch.check(4, medians(0.45, 99.8), losses) is None
    warning = watch.check(6, medians(0.35, 104.7), losses)
    assert warning is not None and "position error" not in warning
    assert "the val rotation error (99.8, 105 deg) is no better than" in warning and "(90 deg)" in warning
    assert "Learned loss weights" not in warning and "raise data.tuple_skip" in warning


def test_the_share_is_a_bound_and_one_good_validation_breaks_the_streak() -> None:
    watch = LearningWatch(CONSTANT)
    just_below = NO_BETTER_SHARE * CONSTANT.translation_m * 0.999
    assert watch.check(4, medians(2.5, 5.0), {"t": 1.0}) is None
    assert watch.check(6, medians(just_below, 5.0), {"t": 1.0}) is None
    assert watch.check(8, medians(2.5, 5.0), {"t": 1.0}) is None
    warning = watch.check(10, medians(2.5, 5.0), {"t": 1.0})
    assert warning is not None and "epochs 8 and 10" in warning and "Relative terms" not in warning


def test_a_split_in_one_place_gives_no_verdict() -> None:
    watch = LearningWatch(ConstantPoseErrors(translation_m=0.0, rotation_deg=0.0))
    assert watch.check(4, medians(1.0, 1.0), {}) is None and watch.check(6, medians(1.0, 1.0), {}) is None


def test_loss_weights_are_e_to_the_minus_s() -> None:
    weights = loss_weights({"t": 1.0, "s_t": 0.0, "s_q": -math.log(10)})
    assert weights.keys() == {"t", "q"} and weights["t"] == 1.0 and math.isclose(weights["q"], 10.0)


def test_a_siamese_run_whose_position_does_not_learn_is_told_to_learn_the_embedding_scale() -> None:
    # siamese_lam1_m1_skip5 (fixed embedding scale): epochs 4 and 6, the rotation learning
    losses = {"total": 2.27, "t": 3.340, "q": 0.147, "t_rel": 0.521, "q_rel": 0.094, "metric": 0.035,
              "s_t": 1.200, "s_q": -1.904, "s_t_rel": -0.652, "s_q_rel": -2.281,
              "embedding_log_scale": 0.0}  # fmt: skip
    watch = LearningWatch(ConstantPoseErrors(translation_m=2.26, rotation_deg=72.8))
    assert watch.check(4, medians(2.202, 7.50), losses) is None
    warning = watch.check(6, medians(2.129, 7.12), losses)
    assert warning is not None and "the val position error (2.2, 2.13 m) is no better" in warning
    assert "rotation error" not in warning and "embedding_log_scale" not in warning
    assert warning.endswith(
        "With siamese_metric, also learn the embedding distance's scale (learn_embedding_scale: true): "
        "at a fixed scale the metric term shrinks the embedding the pose head reads"
    )


def test_fixed_weights_that_favour_the_odometry_terms_are_told_to_weigh_them_less() -> None:
    # geometric_w10_skip1 (fixed weights, odometry weight 10): one pose for every image from epoch 1
    losses = {"total": 14.59, "t": 2.3616, "q": 0.7454, "t_odom": 0.074, "q_odom": 0.0175,
              "s_t": 0.0, "s_q": -2.3026}  # fmt: skip
    watch = LearningWatch(ConstantPoseErrors(translation_m=2.26, rotation_deg=72.8), learned_weights=False)
    assert watch.check(4, medians(2.250, 126.5), losses) is None
    warning = watch.check(6, medians(2.252, 102.52), losses)
    assert (
        warning is not None and "position error (2.25, 2.25 m) and rotation error (126, 103 deg)" in warning
    )
    assert "Loss weights (fixed): t 1, q 10." in warning and "Learned" not in warning
    assert warning.endswith("raise data.tuple_skip, or weight them less")


def test_a_siamese_run_that_learns_its_embedding_scale_is_not_told_to() -> None:
    losses = {"total": 1.0, "t": 3.3, "q": 0.15, "t_rel": 0.52, "q_rel": 0.09, "metric": 0.03, "s_t": 1.2}
    watch = LearningWatch(
        ConstantPoseErrors(translation_m=2.26, rotation_deg=72.8), learned_metric_scale=True
    )
    assert watch.check(4, medians(2.2, 7.5), losses) is None
    warning = watch.check(6, medians(2.13, 7.1), losses)
    assert warning is not None and "learn_embedding_scale" not in warning
    assert warning.endswith("fix the weights (learn_weights: false)")
