"""`pose-train fit`: trains a model per a `TrainConfig` (one process, or DistributedDataParallel
under torchrun); the loop itself is `trainer.Trainer`."""

from __future__ import annotations

import contextlib
from pathlib import Path

from pose_regressor_training.train_config import TrainConfig
from pose_regressor_training.trainer import FitResult, Trainer

__all__ = ["FitResult", "fit"]


def fit(
    config: TrainConfig,
    run_dir: Path,
    resume: bool = False,
    progress: bool = True,
    stop_after_epoch: int | None = None,
) -> FitResult:
    """Trains per `config`, writing RUN_DIR/last.pt and RUN_DIR/best.pt (and TensorBoard logs).

    `stop_after_epoch` ends the run early after that epoch (1-based) as an interruption would,
    leaving a last.pt that `resume=True` continues on the same schedule. A run that fails or is
    interrupted before writing anything removes the RUN_DIR it created (an empty folder).
    """
    created = not run_dir.exists()
    try:
        return Trainer(config, run_dir, resume, progress).fit(stop_after_epoch)
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                run_dir.rmdir()  # only if still empty
        raise
