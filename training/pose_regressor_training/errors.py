"""Errors that `pose-train` reports as one clear line (no traceback)."""


class TrainingError(RuntimeError):
    """Training or evaluation cannot go on (bad data, a NaN loss, missing weights); the message says why."""
