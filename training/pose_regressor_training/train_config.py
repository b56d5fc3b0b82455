"""`pose-train fit` configuration: typed sections loaded from YAML (unknown keys are errors).

Every number of the config has a documented range, `BOUNDS` (one table for all sections, the loss
parameters included): a value outside it (NaN and infinities included) is refused when the config
is loaded, with one line naming the key, the range and the value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pose_regressor.bounds import Bound
from pose_regressor.bundle import MAX_CAMERAS, MAX_HIDDEN_DIM, MAX_INPUT_SIDE
from pose_regressor.distance_prior import MAX_VARIANCE_PER_SQUARED_DISTANCE
from pose_regressor.files import read_yaml
from pose_regressor_training.augment_config import AugmentConfig
from pose_regressor_training.models.config import MAX_HEADS, ModelConfig
from pose_regressor_training.typed_config import (
    ConfigError,
    apply_overrides,
    check_bounds,
    from_mapping,
)

OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("cosine", "step", "constant")

MAX_EPOCHS = 100_000
MAX_BATCH_SIZE = 4096  # camera sets per optimizer step and process
MAX_FRAMES = 10_000_000  # data.max_frames

#: The range of every numeric config entry (dotted path -> range); `loss.params.NAME` applies to
#: parameter NAME of whichever loss is chosen. tests/unit/test_config_bounds.py checks that every
#: numeric field of every section and every loss has an entry here.
BOUNDS: dict[str, Bound] = {
    # data
    "data.tuple_skip": Bound(1, 1000),
    "data.max_frames": Bound(0, MAX_FRAMES),
    # optim
    "optim.lr": Bound(0, 10, lo_open=True),
    "optim.weight_decay": Bound(0, 10),
    "optim.batch_size": Bound(1, MAX_BATCH_SIZE),
    "optim.epochs": Bound(1, MAX_EPOCHS),
    "optim.warmup_epochs": Bound(0, MAX_EPOCHS),
    "optim.step_epochs": Bound(1, MAX_EPOCHS),
    "optim.step_gamma": Bound(0, 1, lo_open=True),  # a decay
    "optim.min_lr_ratio": Bound(0, 1),  # the cosine ends at lr x min_lr_ratio
    "optim.grad_clip": Bound(0, 1_000_000),
    "optim.ema_decay": Bound(0, 1, hi_open=True),  # 0: off
    "optim.time_budget_minutes": Bound(0, 1_000_000),  # 0: off
    # top level
    "seed": Bound(0, 2**32 - 1),
    "num_workers": Bound(0, 64),
    "threads": Bound(0, 256),
    "eval_every": Bound(1, MAX_EPOCHS),
    # model (the bundle's limits where the exported bundle has the same value)
    "model.num_cameras": Bound(1, MAX_CAMERAS),
    "model.image_width": Bound(16, MAX_INPUT_SIDE),
    "model.image_height": Bound(16, MAX_INPUT_SIDE),
    "model.hidden_dim": Bound(1, MAX_HIDDEN_DIM),
    "model.dropout": Bound(0, 1, hi_open=True),
    "model.dof": Bound(3, 6),  # and exactly 3 or 6 (the model config says so)
    "model.small_cnn_width": Bound(1, 1024),
    "model.small_cnn_stages": Bound(1, 6),
    "model.small_cnn_pool": Bound(1, 64, max_items=2),
    "model.variance_head_hidden": Bound(0, MAX_HIDDEN_DIM),
    "model.variance_feature_gradient": Bound(0, 1),
    "model.error_head_hidden": Bound(0, MAX_HIDDEN_DIM),
    "model.position_distance_variance": Bound(0, MAX_VARIANCE_PER_SQUARED_DISTANCE),
    "model.heads": Bound(1, MAX_HEADS),
    "model.aux_shared_stages": Bound(1, 8),
    "model.aux_weight": Bound(0, 1000),
    "model.track_yaw_step": Bound(-2 * math.pi, 2 * math.pi),  # radians (fit sets it: 2 pi / T)
    # augment
    "augment.crop_scale": Bound(0, 1, lo_open=True, max_items=2),
    "augment.crop_ratio": Bound(0.1, 10, max_items=2),
    "augment.brightness": Bound(0, 10),
    "augment.contrast": Bound(0, 10),
    "augment.saturation": Bound(0, 10),
    "augment.hue": Bound(0, 0.5),
    "augment.blur_prob": Bound(0, 1),
    "augment.blur_sigma": Bound(0, 100, lo_open=True, max_items=2),
    "augment.noise_std": Bound(0, 1),
    "augment.camera_dropout": Bound(0, 1),
    # loss.params (weights, initial log-variances, geometry)
    "loss.params.beta": Bound(0, 10_000),
    "loss.params.gamma": Bound(0, 10_000),
    "loss.params.lam": Bound(0, 10_000),
    "loss.params.beta_r": Bound(0, 10_000),
    "loss.params.metric_weight": Bound(0, 10_000),
    "loss.params.s_t_init": Bound(-20, 20),
    "loss.params.s_q_init": Bound(-20, 20),
    "loss.params.s_t_rel_init": Bound(-20, 20),
    "loss.params.s_q_rel_init": Bound(-20, 20),
    "loss.params.s_coupling_init": Bound(-20, 20),
    "loss.params.log_embedding_scale_init": Bound(-20, 20),
    "loss.params.odom_weight": Bound(0, 10_000),
    "loss.params.tuple_length": Bound(2, 64),
    "loss.params.distance": Bound(0, 1000, lo_open=True),  # metres
    "loss.params.axis": Bound(-1000, 1000, max_items=3),
    "loss.params.grid_size": Bound(1, 64),
    "loss.params.depths": Bound(0, 10_000, lo_open=True, max_items=64),  # metres
    "loss.params.min_depth": Bound(0, 10_000, lo_open=True),
    "loss.params.max_error_px": Bound(0, 1_000_000, lo_open=True),
    "loss.params.eps": Bound(0, 1, lo_open=True),
}


#: The most folds `data.holdout_fold` may name.
MAX_FOLDS = 64


def parse_fold(text: str) -> tuple[int, int]:
    """`data.holdout_fold`'s "k/K" -> (k, K), 1 <= k <= K, 2 <= K <= MAX_FOLDS; ValueError otherwise."""
    parts = text.split("/")
    if len(parts) == 2 and all(p.strip().isdigit() for p in parts):
        k, count = int(parts[0]), int(parts[1])
        if 2 <= count <= MAX_FOLDS and 1 <= k <= count:
            return k, count
    raise ValueError(
        f"data.holdout_fold must be k/K with 2 <= K <= {MAX_FOLDS} and 1 <= k <= K (e.g. 1/2), got {text!r}"
    )


@dataclass(frozen=True)
class DataConfig:
    """Where the training data comes from. `kind`: folder (ours), 7scenes or cambridge."""

    kind: str = "folder"
    root: str = ""
    train_split: str = "train"
    val_split: str = "val"  # empty: no validation (best.pt then follows the training loss)
    preload: bool = True  # decode all images once into memory at the model's input size
    tuple_skip: int = 1  # frames between members of a tuple (relative / odometry losses)
    max_frames: int = 0  # about this many training frames: whole trajectories, evenly spaced (0: all)
    cameras: tuple[str, ...] = ()  # train on these cameras of the rig, in this order (empty: all)
    options: dict[str, Any] = field(default_factory=dict)  # loader options, e.g. {scene: chess}
    # Decode every image once before training and leave out frames with a missing or corrupt
    # image (counted and named); off: the first such image stops training, naming the file.
    skip_bad: bool = False
    # "k/K": train without the k-th of K folds of the training trajectories (sequence i, in
    # recording order, is in fold i mod K + 1); `pose-train error-head` trains such fold models.
    # "": the whole training split.
    holdout_fold: str = ""

    def __post_init__(self) -> None:
        if self.holdout_fold:
            parse_fold(self.holdout_fold)
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
    # The backbone's training passes in bfloat16 autocast on a CPU with native bf16 (AVX512-BF16
    # or AMX); the head, the losses, validation and export stay float32. Ignored elsewhere.
    cpu_bf16: bool = False
    # Validate, select and save an exponential moving average of the weights (Polyak averaging)
    # with this decay per optimizer step (0: off, the weights as trained). 0.999 averages about the
    # last 1,000 steps; `fit --resume` continues both the average and the weights it follows.
    ema_decay: float = 0.0
    # Wall-clock minutes that `fit` (data loading included) may take; 0: no limit. `fit` times its
    # epochs and trains as many of `epochs` as fit in the budget (time_budget.py): the same
    # machine's speed varies by 1.5x between days, so an epoch count alone promises no time.
    time_budget_minutes: float = 0.0

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optim.optimizer must be one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"optim.schedule must be one of {', '.join(SCHEDULES)}")
        if self.lr <= 0 or self.batch_size < 1 or self.epochs < 1:
            raise ValueError("optim.lr must be > 0, optim.batch_size and optim.epochs >= 1")


#: What `train_only` may name ("": everything).
TRAIN_ONLY = ("", "variance_head")


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
    # Start from this checkpoint's model weights (e.g. reprojection fine-tuning of a model trained
    # with the default loss); the optimizer, schedule and loss weights start afresh. "": from scratch.
    init_from: str = ""
    # "variance_head": train only the variance head on init_from's model, whose every other weight
    # (BatchNorm statistics included) stays as it is: uncertainty added to, or refitted on, a
    # trained model without changing one of its poses. "": train everything.
    train_only: str = ""

    def __post_init__(self) -> None:
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError("device must be auto, cpu or cuda")
        if self.train_only not in TRAIN_ONLY:
            raise ValueError(f"train_only must be one of {TRAIN_ONLY}, got {self.train_only!r}")
        if self.model.error_head:
            raise ValueError(
                "model.error_head is not trained by fit: train without it, then fit it on the trained "
                "model with `pose-train error-head`"
            )
        if self.train_only == "variance_head":
            if not self.model.variance_head:
                raise ValueError("train_only=variance_head needs model.variance_head=true")
            if not self.init_from:
                raise ValueError(
                    "train_only=variance_head keeps a trained model's poses: set init_from=CHECKPOINT"
                )
            if self.model.aux_odometry and self.model.aux_mode == "alternate":
                raise ValueError(
                    "train_only=variance_head with model.aux_mode=alternate would leave every other "
                    "step without a head loss: use model.aux_mode=joint"
                )


def load_train_config(path: str | Path | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Reads a YAML config (or starts from defaults when `path` is None) and applies overrides.

    Raises:
        ConfigError: one line naming the file (unreadable, not UTF-8, not YAML, too large or too
            deeply nested) or the key (unknown, of the wrong type, or outside its range in `BOUNDS`).
    """
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        loaded = read_yaml(path, "config", ConfigError)
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config {path} must be a mapping of sections")
        data = loaded or {}
    return from_mapping(TrainConfig, apply_overrides(data, overrides), bounds=BOUNDS)


def validate_train_config(config: TrainConfig) -> None:
    """Checks a config built in code (not loaded) against `BOUNDS`, as loading does."""
    check_bounds(config, BOUNDS)
