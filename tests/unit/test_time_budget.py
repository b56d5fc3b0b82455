"""optim.time_budget_minutes: how many epochs fit in a wall-clock budget (the planner alone)."""

from __future__ import annotations

import pytest

from pose_regressor_training.time_budget import (
    VALIDATION_COST_GUESS,
    EpochCosts,
    TimeBudget,
    epochs_within_budget,
    seconds_left,
    validation_due,
)

COSTS = EpochCosts(epoch_seconds=20.0, validation_seconds=3.0)


def test_validation_is_due_every_nth_epoch_and_at_the_last() -> None:
    assert [e for e in range(1, 11) if validation_due(e, 10, 4)] == [4, 8, 10]
    assert [e for e in range(1, 9) if validation_due(e, 8, 4)] == [4, 8]
    assert [e for e in range(1, 4) if validation_due(e, 3, 1)] == [1, 2, 3]


def test_seconds_left_count_the_epochs_and_validations_still_to_come() -> None:
    # planned at the end of epoch 1's training of 10: 9 epochs, validations after epochs 4, 8, 10
    assert seconds_left(1, 10, 4, COSTS) == 9 * 20 + 3 * 3
    # at the end of epoch 4's training: its own validation is still to come
    assert seconds_left(4, 10, 4, COSTS) == 3 + 6 * 20 + 2 * 3
    # stopping now: only this epoch's validation (the last epoch always validates)
    assert seconds_left(5, 5, 4, COSTS) == 3


def test_the_plan_is_the_most_epochs_that_end_within_the_budget() -> None:
    # 60 s spent; 40 epochs of 20 s with 10 validations would need 60 + 39 * 20 + 10 * 3 = 870 s
    assert epochs_within_budget(870, 60, 1, 40, 4, COSTS) == 40
    assert epochs_within_budget(869, 60, 1, 40, 4, COSTS) == 39
    # 600 s: 60 + (N - 1) * 20 + validations <= 600 holds up to N = 27 (6 validations + the last)
    assert epochs_within_budget(600, 60, 1, 40, 4, COSTS) == 26
    assert 60 + seconds_left(1, 26, 4, COSTS) <= 600 < 60 + seconds_left(1, 27, 4, COSTS)
    # never more than planned, never fewer than the epoch already trained
    assert epochs_within_budget(1e9, 60, 1, 12, 4, COSTS) == 12
    assert epochs_within_budget(10, 60, 3, 40, 4, COSTS) == 3


def test_the_budget_guesses_a_validation_until_one_is_timed_then_uses_the_mean() -> None:
    budget = TimeBudget.of(15, eval_every=4, train_sets=12_800, validation_sets=1_600)
    assert budget is not None and budget.budget_seconds == 900
    assert TimeBudget.of(0, 4, 100, 10) is None
    budget.epoch_trained(16.0)
    assert budget.costs() == EpochCosts(16.0, pytest.approx(VALIDATION_COST_GUESS * 16.0 / 8))
    assert "(guessed)" in budget.describe(40, 40, 30.0)
    budget.epoch_ended(16.5, 0.0)  # the checkpoint's writing counts with the epoch
    budget.epoch_trained(17.0)
    budget.epoch_ended(20.5, 3.0)  # trained 17 s, validated 3 s, saved 0.5 s
    assert budget.costs() == EpochCosts(17.0, 3.0)
    line = budget.describe(38, 40, 65.4)
    assert line == (
        "fit: time budget 15 min: 38 of optim.epochs=40 epochs fit "
        "(an epoch takes 17.0 s, a validation 3.0 s, 65 s spent)"
    )
    assert budget.describe(40, 40, 65.4).startswith("fit: time budget 15 min: all 40 epochs fit")
    # planned with these costs: 65 s spent at the end of epoch 3's training
    assert budget.plan(65.0, 3, 40) == epochs_within_budget(900, 65.0, 3, 40, 4, EpochCosts(17.0, 3.0))
