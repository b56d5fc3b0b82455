"""`pose-train fit` configuration: typed sections loaded from YAML (unknown keys are errors)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pose_regressor_training.augment import AugmentConfig
from pose_regressor_training.models.config import ModelConfig
from pose_regressor_training.typed_config import ConfigError, apply_overrides, from_mapping

OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("cosine", "step", "constant")


@dataclass(frozen=True)
class DataConfig:
    """Where the training data comes from. `kind`: folder (ours), 7scenes or cambridge."""

    kind: str = "folder"
    root: str = ""
    train_split: str = "train"
    val_split: str = "val"  # empty: no validation (best.pt then follows the training loss)
    preload: bool = True  # decode all images once into memory at the model's input size
    tuple_skip: int = 1  # frames between members of a tuple (relative / odometry losses)
    max_frames: int = 0  # use at most this many training frames, evenly spaced (0: all)
    cameras: tuple[str, ...] = ()  # train on these cameras of the rig, in this order (empty: all)
    options: dict[str, Any] = field(default_factory=dict)  # loader options, e.g. {scene: chess}
    # Decode every image once before training and leave out frames with a missing or corrupt
    # image (counted and named); off: the first such image stops training, naming the file.
    skip_bad: bool = False

    def __post_init__(self) -> None:
        if self.tuple_skip < 1:
            raise ValueError("data.tuple_skip must be >= 1")
        if self.max_frames < 0:
            raise ValueError("data.max_frames must be >= 0")


@dataclass(frozen=True)
class LossConfig:
    name: str = "homoscedastic"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OptimConfig:
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 32  # per process
    epochs: int = 30
    warmup_epochs: float = 1.0
    schedule: str = "cosine"
    step_epochs: int = 10  # schedule: step
    step_gamma: float = 0.1
    min_lr_ratio: float = 0.01  # schedule: cosine ends at lr * min_lr_ratio
    grad_clip: float = 5.0  # max gradient norm (0: off)
    amp: bool = True  # mixed precision, used on CUDA only

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optim.optimizer must be one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"optim.schedule must be one of {', '.join(SCHEDULES)}")
        if self.lr <= 0 or self.batch_size < 1 or self.epochs < 1:
            raise ValueError("optim.lr must be > 0, optim.batch_size and optim.epochs >= 1")


@dataclass(frozen=True)
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    seed: int = 0
    device: str = "auto"  # auto, cpu, cuda
    num_workers: int = 0  # DataLoader workers (0 is fastest with preloaded images)
    threads: int = 0  # torch CPU threads (0: torch's default)
    eval_every: int = 1  # epochs between validations
    tensorboard: bool = True

    def __post_init__(self) -> None:
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError("device must be auto, cpu or cuda")


def load_train_config(path: str | Path | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Reads a YAML config (or starts from defaults when `path` is None) and applies overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            loaded = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config {path} is not valid YAML: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config {path} must be a mapping of sections")
        data = loaded or {}
    return from_mapping(TrainConfig, apply_overrides(data, overrides))
