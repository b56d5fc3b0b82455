"""The training loop of `pose-train fit`, single process or DistributedDataParallel under torchrun.

`Trainer` owns the model, the data, the optimizer, the learning-rate schedule and the checkpoints;
`Trainer.fit` reads as the loop: for each epoch, `run_epoch` (a `training_step` per batch), then on
the main process `validate` and `save`, then every process waits for the main one.
"""

from __future__ import annotations

import errno
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.distributed as dist
from numpy.typing import NDArray
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from pose_regressor.files import atomic_write_text
from pose_regressor_training.augment import Augmenter
from pose_regressor_training.checkpoint import (
    Checkpoint,
    CheckpointError,
    CheckpointWriteError,
    ResumeState,
    load_checkpoint,
    save_checkpoint,
)
from pose_regressor_training.collapse import ConstantPoseErrors, LearningWatch, rms_spread
from pose_regressor_training.cpu_threads import (
    ThroughputWatch,
    available_cores,
    backbone_precision_line,
    current_setup,
    load_average,
)
from pose_regressor_training.data.dataset import ImageLoadError, worker_error_message
from pose_regressor_training.distributed import start_process
from pose_regressor_training.errors import CheckpointSaveError, TrainingError, TrainingInterrupted
from pose_regressor_training.losses import build_loss
from pose_regressor_training.models import build_model
from pose_regressor_training.models.model import PoseRegressor, images_to_unit_float
from pose_regressor_training.objective import Objective
from pose_regressor_training.predict import median_errors, predict
from pose_regressor_training.stop_signals import StopRequests, stop_signals_deferred, stop_signals_remembered
from pose_regressor_training.time_budget import TimeBudget, validation_due
from pose_regressor_training.train_config import OptimConfig, TrainConfig, validate_train_config
from pose_regressor_training.training_data import Batch, camera_spec, load_training_data, make_loader


@dataclass
class FitResult:
    run_dir: Path
    epochs: int
    best_epoch: int  # 1-based
    best_metrics: dict[str, float]
    sets_per_second: float  # camera sets (one image per camera) trained on per second, all processes
    seconds: float
    length_unit: str = "m"  # of the positions and errors: "units" for an import without a scale


@dataclass
class _Progress:
    """Where the run is; all of it but the timing is restored by a resume."""

    epoch: int = 0  # 0-based index of the epoch running (users read it as epoch + 1)
    global_step: int = 0  # optimizer steps done
    best_score: float = math.inf
    best_epoch: int = 0  # 1-based, as printed and stored; 0: none yet
    best_metrics: dict[str, float] = field(default_factory=dict)
    saved_epoch: int | None = None  # 1-based epoch that last.pt holds; None: not written yet
    sets_seen: int = 0
    train_seconds: float = 0.0


def lr_factor(
    step: int, total_steps: int, warmup_steps: int, config: TrainConfig, steps_per_epoch: int
) -> float:
    """Multiplier of the base learning rate at optimizer step `step` (linear warmup, then the schedule)."""
    if warmup_steps and step < warmup_steps:
        # step + 1: the first step already gets a non-zero learning rate
        return (step + 1) / warmup_steps
    o = config.optim
    if o.schedule == "constant":
        return 1.0
    if o.schedule == "step":
        return float(o.step_gamma ** ((step // steps_per_epoch) // o.step_epochs))
    # max(1, ...): warmup may cover every step; min(progress, 1) holds the floor past the end
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


#: The rotation error that weighs as much as a translation error of one position spread.
ROTATION_SCALE_DEG = 10.0


def position_spread(translations: NDArray[np.float64]) -> float:
    """RMS distance of positions from their mean: the dataset's length unit, whatever SfM chose."""
    rms = rms_spread(translations)
    return rms if rms > 0 else 1.0  # one position or none: no spread to divide by, keep the units


def selection_score(metrics: dict[str, float], spread: float) -> float:
    """What best.pt minimizes, unit-free: median translation error in training position spreads
    plus median rotation error in units of ROTATION_SCALE_DEG."""
    # Scaling every position (an SfM model's arbitrary unit) scales the error and the spread alike;
    # degrees need no such scale, and 10 deg per spread is what 10 deg per metre was in a ~1 m room.
    return metrics["median_translation_m"] / spread + metrics["median_rotation_deg"] / ROTATION_SCALE_DEG


#: The state_dict keys of the variance head (`train_only=variance_head` trains these alone).
VARIANCE_HEAD_PREFIX = "fc_log_variance."


class Trainer:
    """Trains the model of `config` into `run_dir` (last.pt, best.pt, tensorboard/)."""

    def __init__(self, config: TrainConfig, run_dir: Path, resume: bool = False, progress: bool = True):
        self.started = time.perf_counter()
        validate_train_config(config)
        # the epochs to train: optim.epochs, or fewer where optim.time_budget_minutes says so
        self.config, self.epochs = config, config.optim.epochs
        self.device, self.ctx = start_process(config)
        self.show_progress = progress and self.ctx.is_main
        if self.ctx.is_main:
            print(current_setup(config.num_workers).describe(), flush=True)
        self.throughput = ThroughputWatch()
        self.last_path, self.best_path = run_dir / "last.pt", run_dir / "best.pt"
        run_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir = run_dir
        self.data = load_training_data(config, self.show_progress, report=self.ctx.is_main)
        self.model = build_model(self.data.model_config)
        self.model.set_translation_stats(*self.data.translation_stats())
        self.model.train_backbone_bf16, precision_line = backbone_precision_line(
            config.optim.cpu_bf16, self.device.type
        )
        if precision_line and self.ctx.is_main:
            print(precision_line, flush=True)
        self.position_spread = position_spread(self.data.train_frames.translations())
        self.loss = build_loss(config.loss.name, config.loss.params, camera_spec(self.data.train_frames))
        self.objective = Objective(self.model, self.loss).to(self.device)
        # each rank augments differently, and reproducibly
        augment_seed = config.seed + 1000 * self.ctx.rank
        self.augmenter = Augmenter(config.augment, self.data.rig, torch.Generator().manual_seed(augment_seed))
        self.loader, self.sampler, self.loader_order = make_loader(self.data.tuples, config, self.ctx)
        if config.train_only == "variance_head":
            self.objective.requires_grad_(False)
            assert self.model.fc_log_variance is not None  # the config requires model.variance_head
            self.model.fc_log_variance.requires_grad_(True)
        self.params = [p for p in self.objective.parameters() if p.requires_grad]
        self.optimizer = _optimizer(self.params, config.optim)
        # never 0: it divides the epoch's loss sums and sizes the schedule
        self.steps_per_epoch = max(1, len(self.loader))
        self.warmup_steps = int(config.optim.warmup_epochs * self.steps_per_epoch)
        # the scaler below is CUDA's; on CPU optim.amp is ignored
        self.use_amp = config.optim.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.progress = _Progress()
        self.stop_requests = StopRequests()  # fit() replaces it with one that signals fill
        self.history = _History(run_dir / "history.json")
        self.learning_watch = self.watch_learning()
        self.budget = TimeBudget.of(
            config.optim.time_budget_minutes,
            config.eval_every,
            len(self.data.tuples),
            0 if self.data.val_set is None else len(self.data.val_set),
        )
        averaged_weights: dict[str, torch.Tensor] | None = None
        if resume:
            # before DDP wraps the model: DDP copies rank 0's weights to the others
            averaged_weights = self.restore()
        elif config.init_from:
            self.initialize_from(Path(config.init_from))
        self.ema = self.moving_average(averaged_weights)
        self.first_epoch = self.progress.epoch  # 0-based: the first this process trains
        self.resumed_seconds = self.history.seconds_before
        self.train_model: nn.Module = (
            DistributedDataParallel(self.objective) if self.ctx.enabled else self.objective
        )
        self.board = _TensorBoard(run_dir / "tensorboard", config.tensorboard and self.ctx.is_main)

    # ------------------------------------------------------------------------------- the loop
    def fit(self, stop_after_epoch: int | None = None) -> FitResult:
        """Trains up to the last epoch (or `stop_after_epoch`, 1-based, as an interruption would)."""
        end = self.epochs if stop_after_epoch is None else stop_after_epoch
        self.history.start_clock()
        try:
            with stop_signals_remembered() as self.stop_requests:
                self.epochs_until(end)
        except KeyboardInterrupt:
            p = self.progress
            raise TrainingInterrupted(
                p.epoch + 1, self.epochs, p.global_step, self.last_path, p.saved_epoch
            ) from None
        finally:
            self.board.close()
        if self.ctx.enabled:
            dist.destroy_process_group()
        return self.result()

    def epochs_until(self, end: int) -> None:
        """Epochs from where progress stands up to `end` (or the last epoch, which a time budget
        may bring nearer); a stop signal raises KeyboardInterrupt."""
        epoch = self.progress.epoch
        while epoch < min(end, self.epochs):
            self.stop_requests.raise_if_any()  # one whose own KeyboardInterrupt Python dropped
            self.progress.epoch = epoch
            started = time.perf_counter()
            train_loss = self.run_epoch(epoch)
            self.follow_time_budget(epoch, time.perf_counter() - started)
            validation_seconds = 0.0
            if self.ctx.is_main:
                validation_started = time.perf_counter()
                metrics = self.validate(epoch)
                validation_seconds = time.perf_counter() - validation_started if metrics else 0.0
                improved = self.save(epoch, train_loss, metrics)
                self.report(epoch, train_loss, metrics, improved)
            self.wait_for_main(epoch)
            if self.budget is not None:
                self.budget.epoch_ended(time.perf_counter() - started, validation_seconds)
            epoch += 1

    def follow_time_budget(self, epoch: int, train_seconds: float) -> None:
        """With optim.time_budget_minutes, plans (at the end of `epoch`'s training, 0-based) how
        many epochs fit; the main process decides for all."""
        if self.budget is None:
            return
        self.budget.epoch_trained(train_seconds)
        elapsed = self.elapsed_seconds
        planned = self.budget.plan(elapsed, epoch + 1, self.epochs)
        if self.ctx.enabled:
            decision = torch.tensor([planned], dtype=torch.int64, device=self.device)
            dist.broadcast(decision, src=0)
            planned = int(decision.item())
        first_plan = epoch == self.first_epoch
        if (planned != self.epochs or first_plan) and self.ctx.is_main:
            line = self.budget.describe(planned, self.config.optim.epochs, elapsed)
            if not first_plan:
                line += f"; epochs ran slower than planned, so {planned} instead of {self.epochs}"
            print(line, flush=True)
        self.epochs = planned

    @property
    def elapsed_seconds(self) -> float:
        """Wall seconds of this fit so far (data loading included) and of the runs it resumes."""
        return self.resumed_seconds + time.perf_counter() - self.started

    def run_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the training tuples; returns the mean of each loss part."""
        self.objective.train()
        if self.config.train_only:
            # frozen layers must also keep their BatchNorm statistics, and see the features they
            # give at inference (running, not batch, statistics)
            for module in self.model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
        self.loader_order.manual_seed(self.config.seed * 1000 + epoch)  # an epoch's order survives resumes
        sums: dict[str, float] = {}
        started, sets_before = time.perf_counter(), self.progress.sets_seen
        with tqdm(
            total=self.steps_per_epoch,
            desc=f"epoch {epoch + 1}/{self.epochs}",
            disable=not self.show_progress,
            unit="batch",
            leave=False,
        ) as bar:
            for batch in self.batches():
                self.stop_requests.raise_if_any()
                parts = self.training_step(batch)
                for key, value in parts.items():
                    sums[key] = sums.get(key, 0.0) + float(value.detach())
                bar.set_postfix(loss=f"{parts['total'].item():.3f}", lr=f"{self.learning_rate:.2e}")
                bar.update()
        seconds = time.perf_counter() - started
        self.progress.train_seconds += seconds
        rate = (self.progress.sets_seen - sets_before) / max(seconds, 1e-9)
        slowdown = self.throughput.epoch(rate, load_average(), available_cores())
        if slowdown and self.ctx.is_main:
            print(slowdown, flush=True)
        means = {key: value / self.steps_per_epoch for key, value in sums.items()}
        self.board.scalars({**means, "lr": self.learning_rate}, epoch + 1, "train")
        return means

    def batches(self) -> Iterator[Batch]:
        """This epoch's batches; an unreadable image met in a worker process reads as one met here."""
        with stop_signals_deferred():  # iter() forks the workers: a Ctrl-C there would be lost
            batches = iter(self.loader)
        try:
            yield from batches
        except ImageLoadError as exc:
            raise ImageLoadError(worker_error_message(exc)) from None

    def training_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One optimizer step on a batch of tuples; returns the loss parts. A NaN/inf loss stops training."""
        self.set_learning_rate()
        images, masks, t, q = self.prepare(batch)
        with torch.autocast(self.device.type, enabled=self.use_amp):
            parts = self.train_model(images, masks, t, q, self.progress.global_step)
        total = parts["total"]
        # before backward: a NaN never reaches the weights, so last.pt stays a good checkpoint
        if not torch.isfinite(total):
            raise TrainingError(self.non_finite_message(parts))
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        if self.config.optim.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the AMP-scaled ones
            torch.nn.utils.clip_grad_norm_(self.params, self.config.optim.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        self.progress.global_step += 1
        self.progress.sets_seen += t.shape[0] * t.shape[1] * self.ctx.world_size
        return dict(parts)

    def prepare(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Images (augmented, in [0, 1]), one dropout mask per camera set, and the poses as (B, K, .)."""
        b, k = batch["t"].shape[:2]
        images = images_to_unit_float(batch["images"].flatten(0, 1))
        images, t, q = self.augmenter(images, batch["t"].flatten(0, 1), batch["q"].flatten(0, 1), k)
        masks = self.model.random_masks(b * k, self.model.config.heads, device=self.device)
        device = self.device
        return images.to(device), masks, t.to(device).reshape(b, k, 3), q.to(device).reshape(b, k, 4)

    def set_learning_rate(self) -> None:
        total_steps = self.steps_per_epoch * self.epochs
        step = self.progress.global_step
        factor = lr_factor(step, total_steps, self.warmup_steps, self.config, self.steps_per_epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.optim.lr * factor

    @property
    def learning_rate(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def validate(self, epoch: int) -> dict[str, float]:
        """Errors on the val split at every `eval_every`-th epoch and the last; {} at the others."""
        number = epoch + 1
        due = validation_due(number, self.epochs, self.config.eval_every)
        val_set = self.data.val_set
        if val_set is None or not due:
            return {}
        t_pred, q_pred = predict(self.kept_model, val_set, self.device)
        metrics = median_errors(val_set, t_pred[:, 0], q_pred[:, 0])
        self.board.scalars(metrics, number, "val")
        return metrics

    def watch_learning(self) -> LearningWatch | None:
        """What tells `report` that the val errors are no better than one pose for every image."""
        val_set, train = self.data.val_set, self.data.train_frames
        if val_set is None or len(val_set.frame_list) == 0 or len(train) == 0:
            return None
        val = val_set.frame_list
        # a fixed weight or scale is a learned_scalar parameter that takes no gradient
        learned = {
            name.rpartition(".")[2]
            for name, parameter in self.loss.named_parameters()
            if parameter.requires_grad
        }
        return LearningWatch(
            ConstantPoseErrors.of(
                train.translations(), train.quaternions(), val.translations(), val.quaternions()
            ),
            learned_weights=any(name.startswith("s_") for name in learned),
            learned_metric_scale="log_embedding_scale" in learned,
            length_unit=self.data.info.length_unit,
        )

    # --------------------------------------------------------------------------- checkpoints
    def save(self, epoch: int, train_loss: dict[str, float], metrics: dict[str, float]) -> bool:
        """Writes last.pt, and best.pt first when this epoch is the best so far (returned)."""
        p = self.progress
        if metrics:
            score = selection_score(metrics, self.position_spread)
        else:  # without a val split the training loss chooses; between validations nothing does
            score = train_loss["total"] if self.data.val_set is None else math.inf
        improved, best_metrics = score < p.best_score, metrics
        if self.config.train_only:
            # The pose is frozen, so its val score cannot choose between epochs: the latest head
            # (trained furthest down the schedule) is the best one, validated this epoch or not.
            improved, best_metrics = True, metrics or p.best_metrics
            score = selection_score(best_metrics, self.position_spread) if best_metrics else score
        if improved:
            p.best_score, p.best_epoch, p.best_metrics = score, epoch + 1, best_metrics
        checkpoint = self.checkpoint(epoch, train_loss, metrics)
        # Ctrl-C waits for the writes, so that the interruption message knows what last.pt holds.
        with stop_signals_deferred():
            try:
                # before last.pt: a resume keeps the history up to the epoch last.pt holds
                self.history.record(epoch + 1, train_loss, metrics, self.learning_rate)
                # best.pt before last.pt: a kill between the two then repeats this epoch on resume
                # (and rewrites the same best.pt) instead of leaving a best.pt older than last.pt says.
                if improved:
                    save_checkpoint(self.best_path, checkpoint)
                save_checkpoint(self.last_path, checkpoint)
            except CheckpointWriteError as exc:
                disk_full = exc.code in (errno.ENOSPC, errno.EDQUOT)
                message = self.save_failed_message(exc, epoch)
                raise CheckpointSaveError(message, p.saved_epoch is not None, disk_full) from None
            p.saved_epoch = epoch + 1
        return improved

    def checkpoint(self, epoch: int, train_loss: dict[str, float], metrics: dict[str, float]) -> Checkpoint:
        p = self.progress
        return Checkpoint(
            model_config=self.data.model_config,
            model=self.kept_model.state_dict(),
            rig=self.data.rig,
            config=self.config,
            dataset=self.data.info,
            epoch=epoch + 1,
            metrics=metrics,
            train_loss=train_loss,
            best_score=p.best_score,
            best_epoch=p.best_epoch,
            best_metrics=p.best_metrics,
            resume=ResumeState(
                loss=self.loss.state_dict(),
                optimizer=self.optimizer.state_dict(),
                global_step=p.global_step,
                torch_rng=torch.get_rng_state(),
                augment_rng=self.augmenter.generator.get_state(),
                live_model=self.model.state_dict() if self.ema is not None else None,
                planned_epochs=self.epochs if self.budget is not None else None,
            ),
        )

    def moving_average(self, averaged_weights: dict[str, torch.Tensor] | None) -> AveragedModel | None:
        """The moving average of the weights (optim.ema_decay), from `averaged_weights` on a resume
        that saved one, else from the weights as they are now; None when off."""
        decay = self.config.optim.ema_decay
        if decay == 0.0 and averaged_weights is not None:
            # continuing without it would silently replace the saved average by the trained weights
            raise TrainingError(
                f"{self.last_path} holds a moving average of the weights but this config sets "
                "optim.ema_decay=0; resume with the decay it was trained with, or start a new run"
            )
        if decay == 0.0:
            return None
        # BatchNorm statistics are averaged too: they must match the averaged weights they normalize
        average = get_ema_multi_avg_fn(decay)  # type: ignore[no-untyped-call]
        ema = AveragedModel(self.model, multi_avg_fn=average, use_buffers=True)
        if averaged_weights is not None:
            ema.module.load_state_dict(averaged_weights)
            # counted as started: its first update must not copy the training weights over it
            ema.n_averaged.fill_(max(1, self.progress.global_step))
        if self.ctx.is_main:
            print(
                f"fit: validating and saving a moving average of the weights (decay {decay} per step, "
                f"about the last {round(1 / (1 - decay))} steps)",
                flush=True,
            )
        return ema

    @property
    def kept_model(self) -> PoseRegressor:
        """What validation scores and the checkpoints hold: the moving average when there is one."""
        return self.model if self.ema is None else cast(PoseRegressor, self.ema.module)

    def restore(self) -> dict[str, torch.Tensor] | None:
        """Continues from last.pt: weights, optimizer, loss weights, random state and counters.
        Returns the moving average of the weights that last.pt holds beside them (None: none)."""
        checkpoint = load_checkpoint(self.last_path, map_location=self.device)
        state = checkpoint.resume
        if state is None:
            raise TrainingError(f"{self.last_path} holds weights only (not written by fit); it cannot resume")
        averaged = None if state.live_model is None else checkpoint.model
        self.model.load_state_dict(checkpoint.model if state.live_model is None else state.live_model)
        self.loss.load_state_dict(state.loss)
        self.optimizer.load_state_dict(state.optimizer)
        torch.set_rng_state(state.torch_rng)
        self.augmenter.generator.set_state(state.augment_rng)
        self.progress = _Progress(
            epoch=checkpoint.epoch,  # the next epoch's 0-based index is the 1-based number done
            global_step=state.global_step,
            # rescored: a checkpoint of version 1 scored metres + degrees / 10, not this unit-free score
            best_score=(
                selection_score(checkpoint.best_metrics, self.position_spread)
                if checkpoint.best_metrics
                else checkpoint.best_score
            ),
            best_epoch=checkpoint.best_epoch,
            best_metrics=dict(checkpoint.best_metrics),
            saved_epoch=checkpoint.epoch,
        )
        self.history.restore(checkpoint.epoch)  # 1-based: the epochs last.pt holds
        if state.planned_epochs is not None and self.budget is not None:
            self.epochs = min(self.epochs, state.planned_epochs)  # the schedule goes on as planned
        if self.ctx.is_main and checkpoint.epoch >= self.epochs:
            print(f"fit: {self.last_path} holds all {self.epochs} epochs already; nothing to train")
        elif self.ctx.is_main:
            print(f"fit: resuming {self.last_path} at epoch {checkpoint.epoch + 1}/{self.epochs}")
        return averaged

    def initialize_from(self, path: Path) -> None:
        """The model weights of checkpoint `path` (config.init_from); everything else starts afresh."""
        try:
            weights = load_checkpoint(path, map_location=self.device).model
            head_change = ""
            if self.config.train_only == "variance_head":
                weights, head_change = _with_own_variance_head(weights, self.model.state_dict())
            self.model.load_state_dict(weights)
        except CheckpointError as exc:
            raise TrainingError(f"init_from: {exc}") from None
        except RuntimeError as exc:  # load_state_dict: missing, unexpected or differently shaped weights
            first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
            raise TrainingError(
                f"init_from: the model of {path} does not fit this config's model ({first})"
            ) from None
        if self.ctx.is_main:
            print(f"fit: starting from the weights of {path}")
            if head_change:
                print(f"fit: {head_change}: training a new one on its frozen model")

    # ------------------------------------------------------------------------ what it says
    def report(self, epoch: int, train_loss: dict[str, float], metrics: dict[str, float], best: bool) -> None:
        summary = f"epoch {epoch + 1}/{self.epochs}: loss {train_loss['total']:.4f}"
        if metrics:
            summary += (
                f", val median {metrics['median_translation_m']:.3f} {self.data.info.length_unit} "
                f"{metrics['median_rotation_deg']:.2f} deg"
            )
        print(summary + (" (best)" if best else ""), flush=True)  # flushed: tests and logs follow it live
        watch, steps = self.learning_watch, self.progress.global_step
        warning = watch.check(epoch + 1, metrics, train_loss, steps) if watch else None
        if warning:
            print(warning, flush=True)

    def wait_for_main(self, epoch: int) -> None:
        """Every process waits for the main one's checkpoint, so all know what last.pt holds."""
        if self.ctx.enabled:
            dist.barrier()
        self.progress.saved_epoch = epoch + 1

    def result(self) -> FitResult:
        p = self.progress
        seconds = time.perf_counter() - self.started
        # resuming a finished run trains for 0 s
        rate = p.sets_seen / max(p.train_seconds, 1e-9)
        unit = self.data.info.length_unit
        return FitResult(self.run_dir, self.epochs, p.best_epoch, p.best_metrics, rate, seconds, unit)

    def non_finite_message(self, parts: dict[str, torch.Tensor]) -> str:
        """Why training stopped on a NaN/inf loss, and what is left to go back to."""
        p = self.progress
        details = ", ".join(f"{key}={float(value.detach()):.4g}" for key, value in parts.items())
        kept = (
            f"the last good checkpoint {self.last_path} (epoch {p.saved_epoch}) is kept untouched"
            if p.saved_epoch is not None
            else "no checkpoint was written yet"
        )
        return (
            f"loss became {float(parts['total'].detach())} at epoch {p.epoch + 1}/{self.epochs}, "
            f"step {p.global_step} ({details}); training stopped; {kept} "
            "(lower optim.lr or check the data's poses)"
        )

    def save_failed_message(self, error: CheckpointWriteError, epoch: int) -> str:
        """Why training stopped on a failed checkpoint write, and what is left intact."""
        saved = self.progress.saved_epoch
        kept = (
            f"the previous checkpoint {self.last_path} (epoch {saved}) is intact"
            if saved is not None
            else "no checkpoint was written yet"
        )
        if error.path != self.last_path and error.path.exists():
            kept += f", and so is {error.path.name} from before"
        where = f"at the end of epoch {epoch + 1}/{self.epochs}"
        return f"{error} {where}; its temporary file was removed; {kept}"


def _optimizer(params: list[nn.Parameter], optim: OptimConfig) -> torch.optim.Optimizer:
    optimizer_class = torch.optim.AdamW if optim.optimizer == "adamw" else torch.optim.Adam
    return optimizer_class(params, lr=optim.lr, weight_decay=optim.weight_decay)


class _History:
    """RUN_DIR/history.json: per epoch the wall time since training began (seconds, summed over
    resumes, validation included, data loading not), the mean training loss parts, the learning
    rate and the validation medians ({} between validations), for learning curves and error
    against training time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.epochs: list[dict[str, Any]] = []
        self.seconds_before = 0.0  # wall time of the runs this one resumes
        self.clock = time.perf_counter()

    def start_clock(self) -> None:
        self.clock = time.perf_counter()

    def restore(self, saved_epoch: int) -> None:
        """Keeps the entries up to `saved_epoch` (1-based, what last.pt holds); none if unreadable."""
        try:
            loaded = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            loaded = []  # a history lost or from an older version: the curves start at the resume
        self.epochs = [e for e in loaded if isinstance(e, dict) and e.get("epoch", 0) <= saved_epoch]
        self.seconds_before = float(self.epochs[-1]["seconds"]) if self.epochs else 0.0

    def record(self, epoch: int, train_loss: dict[str, float], metrics: dict[str, float], lr: float) -> None:
        seconds = self.seconds_before + time.perf_counter() - self.clock
        entry = {"epoch": epoch, "seconds": seconds, "lr": lr, "train": train_loss, "val": metrics}
        self.epochs = [*(e for e in self.epochs if e["epoch"] < epoch), entry]
        try:
            atomic_write_text(self.path, json.dumps(self.epochs, indent=1) + "\n")
        except OSError as exc:
            raise CheckpointWriteError(self.path, exc, "training history") from exc


class _TensorBoard:
    """TensorBoard scalars when available and enabled; silently nothing otherwise."""

    def __init__(self, log_dir: Path, enabled: bool) -> None:
        self.writer: Any = None
        if enabled:
            try:
                # optional dependency: imported only when logging is on
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                print("fit: tensorboard is not installed; no TensorBoard logs")
                return
            self.writer = SummaryWriter(str(log_dir))

    def scalars(self, values: dict[str, float], step: int, prefix: str) -> None:
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(f"{prefix}/{key}", value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _with_own_variance_head(
    weights: dict[str, torch.Tensor], own: dict[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], str]:
    """A checkpoint's weights for `train_only=variance_head`: where its variance head is missing
    or has another form (names or shapes) than this config's, the head of `own` (freshly
    initialized) replaces it. Returns the weights and why the head was replaced ("" if it was not)."""
    theirs, ours = _variance_head_of(weights), _variance_head_of(own)
    if {k: v.shape for k, v in theirs.items()} == {k: v.shape for k, v in ours.items()}:
        return weights, ""
    reason = (
        "its variance head has another form (model.variance_head_hidden)"
        if theirs
        else "it has no variance head"
    )
    rest = {k: v for k, v in weights.items() if k not in theirs}
    return {**rest, **ours}, reason


def _variance_head_of(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if k.startswith(VARIANCE_HEAD_PREFIX)}
