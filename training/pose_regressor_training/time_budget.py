"""`optim.time_budget_minutes`: train as many of the configured epochs as a wall-clock budget holds.

The same machine trains the same recipe 1.5x slower on some days than on others (docs/results.md),
so a fixed epoch count cannot promise a training time. With a budget, `fit` times its epochs and
plans how many of `optim.epochs` fit: `optim.epochs` is the most it trains, the budget may cut it.

The learning-rate schedule depends on the number of epochs (the cosine ends at the last one), so
the plan is made as early as the epoch times are known, after the first epoch (with
`optim.warmup_epochs` >= 1 that epoch is all warmup, which does not depend on the number of
epochs, so a run planned to N epochs is the run `optim.epochs=N` gives, step for step). After that,
the plan is only ever cut, when the epochs run slower than planned: a cut moves the cosine a little
further along at once, never back.

Plain Python with no torch: `Trainer` gives it the times it measured.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Before the first validation has been timed, one is guessed as this many epochs' worth of its
#: sets at the training rate (a validation set runs the track shifts forward only, a training set
#: runs forward and backward once); the first measured validation replaces the guess.
VALIDATION_COST_GUESS = 1.5


def validation_due(epoch: int, last_epoch: int, eval_every: int) -> bool:
    """Whether `fit` validates at the end of `epoch` (1-based): every `eval_every`-th and the last."""
    return epoch % eval_every == 0 or epoch == last_epoch


@dataclass(frozen=True)
class EpochCosts:
    """Wall seconds of one epoch's training (and checkpoint writing) and of one validation."""

    epoch_seconds: float
    validation_seconds: float


def seconds_left(epoch: int, last_epoch: int, eval_every: int, costs: EpochCosts) -> float:
    """Seconds from the end of `epoch`'s training to the end of `last_epoch` (both 1-based): this
    epoch's validation if due, then the epochs after it with theirs."""
    seconds = costs.validation_seconds if validation_due(epoch, last_epoch, eval_every) else 0.0
    for later in range(epoch + 1, last_epoch + 1):
        seconds += costs.epoch_seconds
        if validation_due(later, last_epoch, eval_every):
            seconds += costs.validation_seconds
    return seconds


def epochs_within_budget(
    budget_seconds: float,
    elapsed_seconds: float,
    epoch: int,
    planned_epochs: int,
    eval_every: int,
    costs: EpochCosts,
) -> int:
    """The most epochs, at least `epoch` and at most `planned_epochs`, whose training ends within
    `budget_seconds`, planned at the end of `epoch`'s training (1-based) after `elapsed_seconds`.
    `epoch` itself when even stopping now overruns: that epoch is trained already."""
    for last_epoch in range(planned_epochs, epoch, -1):
        if elapsed_seconds + seconds_left(epoch, last_epoch, eval_every, costs) <= budget_seconds:
            return last_epoch
    return epoch


@dataclass
class TimeBudget:
    """What `Trainer` keeps of the budget: the epoch times measured so far, and the plan."""

    budget_seconds: float
    eval_every: int
    #: the validation sets per training set, for the guess of a validation's cost
    validation_share: float
    epoch_seconds: list[float]
    validation_seconds: list[float]

    @classmethod
    def of(cls, minutes: float, eval_every: int, train_sets: int, validation_sets: int) -> TimeBudget | None:
        """None when `minutes` is 0 (no budget)."""
        if minutes <= 0:
            return None
        share = validation_sets / max(1, train_sets)
        return cls(60.0 * minutes, eval_every, share, [], [])

    def epoch_trained(self, seconds: float) -> None:
        """An epoch's training took `seconds` (what the plan at its end knows of it)."""
        self.epoch_seconds.append(seconds)

    def epoch_ended(self, seconds: float, validation_seconds: float) -> None:
        """The same epoch took `seconds` in all, `validation_seconds` of them validating (0: none)."""
        self.epoch_seconds[-1] = seconds - validation_seconds
        if validation_seconds > 0:
            self.validation_seconds.append(validation_seconds)

    def costs(self) -> EpochCosts:
        """The mean epoch and validation times so far (a validation guessed until one is timed)."""
        epoch = sum(self.epoch_seconds) / len(self.epoch_seconds)
        if self.validation_seconds:
            validation = sum(self.validation_seconds) / len(self.validation_seconds)
        else:
            validation = VALIDATION_COST_GUESS * self.validation_share * epoch
        return EpochCosts(epoch, validation)

    def plan(self, elapsed_seconds: float, epoch: int, planned_epochs: int) -> int:
        """The epochs to train, decided at the end of `epoch`'s training; never more than planned."""
        return epochs_within_budget(
            self.budget_seconds, elapsed_seconds, epoch, planned_epochs, self.eval_every, self.costs()
        )

    def describe(self, planned_epochs: int, configured_epochs: int, elapsed_seconds: float) -> str:
        """One line for the log: the plan and what it rests on."""
        costs = self.costs()
        fits = (
            f"all {configured_epochs} epochs fit"
            if planned_epochs == configured_epochs
            else f"{planned_epochs} of optim.epochs={configured_epochs} epochs fit"
        )
        return (
            f"fit: time budget {self.budget_seconds / 60:g} min: {fits} "
            f"(an epoch takes {costs.epoch_seconds:.1f} s, a validation {costs.validation_seconds:.1f} s"
            f"{'' if self.validation_seconds else ' (guessed)'}, {elapsed_seconds:.0f} s spent)"
        )
