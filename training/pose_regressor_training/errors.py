"""Errors that `pose-train` reports as one clear line (no traceback)."""

from __future__ import annotations

from pathlib import Path


class TrainingError(RuntimeError):
    """Training or evaluation cannot go on (bad data, a NaN loss, missing weights); the message says why."""


class CheckpointSaveError(TrainingError):
    """Writing a checkpoint failed (e.g. the disk is full) and training stopped; the message says
    which file, why, and which checkpoint is left intact. `resumable`: a previous last.pt exists."""

    def __init__(self, message: str, resumable: bool, disk_full: bool) -> None:
        super().__init__(message)
        self.resumable = resumable
        self.disk_full = disk_full  # ENOSPC or EDQUOT: freeing space is the fix


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) during `fit`: where training stopped and the checkpoint a resume starts from.

    A KeyboardInterrupt, so that callers which only know about Ctrl-C still stop as usual.
    """

    def __init__(
        self, epoch: int, epochs: int, step: int, checkpoint: Path, checkpoint_epoch: int | None
    ) -> None:
        self.epoch = epoch  # 1-based epoch that was running
        self.epochs = epochs
        self.step = step  # optimizer steps done
        self.checkpoint = checkpoint  # RUN_DIR/last.pt
        self.checkpoint_epoch = checkpoint_epoch  # 1-based epoch it holds; None: not written yet
        super().__init__(self.describe())

    def describe(self) -> str:
        where = f"interrupted at epoch {self.epoch}/{self.epochs}, step {self.step}"
        if self.checkpoint_epoch is None:
            return f"{where}; no checkpoint was written yet"
        return f"{where}; {self.checkpoint} (epoch {self.checkpoint_epoch}) is intact"
