"""`pose-train fit`: the training loop (single process or DistributedDataParallel via torchrun)."""

from __future__ import annotations

import contextlib
import errno
import math
import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from pose_regressor import pose
from pose_regressor_training.augment import Augmenter, track_shift_yaw
from pose_regressor_training.checkpoint import (
    CheckpointWriteError,
    load_checkpoint,
    model_config_mapping,
    save_checkpoint,
)
from pose_regressor_training.data.dataset import (
    FrameList,
    ImageLoadError,
    PoseDataset,
    describe_skipped,
    worker_error_message,
)
from pose_regressor_training.data.sources import load_dataset
from pose_regressor_training.errors import CheckpointSaveError, TrainingError, TrainingInterrupted
from pose_regressor_training.losses import CameraSpec, PoseBatch, PoseLoss, build_loss, required_tuple_length
from pose_regressor_training.losses.geometry import consecutive_relative_poses
from pose_regressor_training.models import PoseRegressor, build_model
from pose_regressor_training.models.model import images_to_unit_float
from pose_regressor_training.train_config import TrainConfig, validate_train_config
from pose_regressor_training.typed_config import to_mapping


# ---------------------------------------------------------------------------------------- data
class TupleDataset(Dataset[dict[str, torch.Tensor]]):
    """Samples of K frames i, i + skip, ..., i + (K - 1) skip of one sequence, stacked on dim 0."""

    def __init__(self, base: PoseDataset, length: int, skip: int) -> None:
        self.base, self.length, self.skip = base, length, skip
        frames = base.frame_list.frames
        span = (length - 1) * skip
        self.starts = [
            i
            for i in range(len(frames) - span)
            if all(frames[i + k * skip].sequence == frames[i].sequence for k in range(length))
        ]
        if not self.starts:
            raise TrainingError(f"no tuples of {length} frames with skip {skip} fit in any sequence")

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        start = self.starts[index]
        items = [self.base[start + k * self.skip] for k in range(self.length)]
        return {key: torch.stack([item[key] for item in items]) for key in items[0]}


def _subsample(frame_list: FrameList, max_frames: int) -> FrameList:
    if max_frames <= 0 or len(frame_list) <= max_frames:
        return frame_list
    keep = np.linspace(0, len(frame_list) - 1, max_frames).round().astype(int)
    return frame_list.subset(sorted(set(keep.tolist())))


def camera_spec(frame_list: FrameList) -> CameraSpec:
    cam = frame_list.rig.cameras[0]
    i = cam.intrinsics
    return CameraSpec(
        fx=i.fx,
        fy=i.fy,
        cx=i.cx,
        cy=i.cy,
        width=i.width,
        height=i.height,
        t_base_cam=tuple(float(v) for v in cam.translation),  # type: ignore[arg-type]
        q_base_cam_xyzw=tuple(float(v) for v in cam.rotation_xyzw),  # type: ignore[arg-type]
    )


# ------------------------------------------------------------------------------------ running
@dataclass
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def _init_distributed(device: torch.device) -> DistributedContext:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistributedContext()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistributedContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("device: cuda was asked for but no CUDA GPU is available")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def seed_everything(seed: int) -> None:
    # numpy's global generator is not used here (code takes explicit Generators); torch's is.
    random.seed(seed)
    torch.manual_seed(seed)


class Objective(nn.Module):
    """Model and loss in one module, so that DistributedDataParallel syncs the loss's learned weights too."""

    def __init__(self, model: PoseRegressor, loss: PoseLoss) -> None:
        super().__init__()
        self.model = model
        self.loss = loss

    def forward(
        self, images: torch.Tensor, masks: torch.Tensor, t: torch.Tensor, q: torch.Tensor, step: int = 0
    ) -> dict[str, torch.Tensor]:
        b, k = t.shape[:2]
        out = self.model(images, masks)
        pred = PoseBatch(
            t=out.t[:, 0].reshape(b, k, 3),
            q=out.q[:, 0].reshape(b, k, 4),
            embedding=out.embedding.reshape(b, k, -1),
        )
        parts = self.loss(pred, PoseBatch(t=t, q=q))
        odometry = self.model.odometry
        if odometry is None or out.odometry_features is None:
            return parts
        # Auxiliary odometry on consecutive frames of each tuple (VLocNet).
        features = out.odometry_features.reshape(b, k, -1)
        t_rel_pred, q_rel_pred = odometry.relative_pose(
            features[:, :-1].flatten(0, 1), features[:, 1:].flatten(0, 1)
        )
        t_rel, q_rel = consecutive_relative_poses(t, q)
        aux = odometry.loss(t_rel_pred, q_rel_pred, t_rel.flatten(0, 1), q_rel.flatten(0, 1))
        config = self.model.config
        if config.aux_mode == "alternate":
            total = config.aux_weight * aux if step % 2 else parts["total"]
        else:
            total = parts["total"] + config.aux_weight * aux
        return {**parts, "total": total, "main": parts["total"], "aux_odometry": aux}


def lr_factor(
    step: int, total_steps: int, warmup_steps: int, config: TrainConfig, steps_per_epoch: int
) -> float:
    """Multiplier of the base learning rate at optimizer step `step` (linear warmup, then the schedule)."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    o = config.optim
    if o.schedule == "constant":
        return 1.0
    if o.schedule == "step":
        return float(o.step_gamma ** ((step // steps_per_epoch) // o.step_epochs))
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


# --------------------------------------------------------------------------------- prediction
@torch.no_grad()
def predict(
    model: PoseRegressor,
    dataset: PoseDataset,
    device: torch.device,
    batch_size: int = 64,
    mc_samples: int = 0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Poses for every frame: deterministic (mask of ones) -> t (N, 1, 3), q (N, 1, 4); with
    `mc_samples` = S > 0, S MC-dropout samples per frame -> (N, S, 3), (N, S, 4)."""
    model.eval()
    generator = torch.Generator(device="cpu").manual_seed(seed)
    ts, qs = [], []
    for start in range(0, len(dataset), batch_size):
        idx = range(start, min(start + batch_size, len(dataset)))
        images = torch.stack([torch.from_numpy(dataset.images(i)) for i in idx])
        x = images_to_unit_float(images).to(device)
        masks = None
        if mc_samples > 0:
            masks = model.random_masks(1, mc_samples, generator).to(device)
        out = model(x, masks)
        ts.append(out.t.double().cpu().numpy())
        qs.append(out.q.double().cpu().numpy())
    return np.concatenate(ts), np.concatenate(qs)


def median_errors(dataset: PoseDataset, t_pred: np.ndarray, q_pred: np.ndarray) -> dict[str, float]:
    frames = dataset.frame_list.frames
    t_gt = np.stack([f.translation for f in frames])
    q_gt = np.stack([f.quat_xyzw for f in frames])
    t_err = pose.translation_error(t_gt, t_pred)
    r_err = pose.rotation_error_deg(q_gt, q_pred)
    return {
        "median_translation_m": float(np.median(t_err)),
        "median_rotation_deg": float(np.median(r_err)),
        "mean_translation_m": float(np.mean(t_err)),
        "mean_rotation_deg": float(np.mean(r_err)),
    }


def selection_score(metrics: dict[str, float]) -> float:
    """What best.pt minimizes: median translation error plus median rotation error at 10 deg per metre."""
    return metrics["median_translation_m"] + metrics["median_rotation_deg"] / 10.0


# ------------------------------------------------------------------------------------ fitting
@dataclass
class FitResult:
    run_dir: Path
    epochs: int
    best_epoch: int
    best_metrics: dict[str, float]
    images_per_second: float
    seconds: float


def _batches(loader: DataLoader[dict[str, torch.Tensor]]) -> Iterator[dict[str, torch.Tensor]]:
    """The loader's batches; an unreadable image met in a worker process reads as one met here."""
    try:
        yield from loader
    except ImageLoadError as exc:
        raise ImageLoadError(worker_error_message(exc)) from None


@contextmanager
def _deferred_interrupt() -> Iterator[None]:
    """Holds back Ctrl-C until the block is done, so that an interruption always knows which epoch
    last.pt holds (the writes are atomic anyway; this is about what the message says)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)
    if received:
        raise KeyboardInterrupt


def _save_failed_message(
    error: CheckpointWriteError, epoch: int, epochs: int, last_path: Path, saved_epoch: int | None
) -> str:
    """Why training stopped on a failed checkpoint write, and what is left intact."""
    kept = (
        f"the previous checkpoint {last_path} (epoch {saved_epoch}) is intact"
        if saved_epoch is not None
        else "no checkpoint was written yet"
    )
    if error.path != last_path and error.path.exists():
        kept += f", and so is {error.path.name} from before"
    return f"{error} at the end of epoch {epoch}/{epochs}; its temporary file was removed; {kept}"


def _non_finite_message(
    parts: dict[str, torch.Tensor],
    epoch: int,
    epochs: int,
    step: int,
    last_path: Path,
    saved_epoch: int | None,
) -> str:
    """Why training stopped on a NaN/inf loss, and what is left to go back to."""
    details = ", ".join(f"{key}={float(value.detach()):.4g}" for key, value in parts.items())
    kept = (
        f"the last good checkpoint {last_path} (epoch {saved_epoch}) is kept untouched"
        if saved_epoch is not None
        else "no checkpoint was written yet"
    )
    return (
        f"loss became {float(parts['total'].detach())} at epoch {epoch}/{epochs}, step {step} ({details}); "
        f"training stopped; {kept} (lower optim.lr or check the data's poses)"
    )


class _TensorBoard:
    """TensorBoard scalars when available and enabled; silently nothing otherwise."""

    def __init__(self, log_dir: Path, enabled: bool) -> None:
        self.writer: Any = None
        if enabled:
            try:
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


def _pose_dataset(
    frames: FrameList, size: tuple[int, int], config: TrainConfig, progress: bool, report: bool, what: str
) -> PoseDataset:
    """The dataset of a split; with data.skip_bad, without the frames whose images cannot be read."""
    dataset = PoseDataset(
        frames, size, preload=config.data.preload, progress=progress, skip_bad=config.data.skip_bad
    )
    if dataset.skipped and report:
        print(f"fit: {describe_skipped(dataset.skipped, len(frames), what)}", flush=True)
    return dataset


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
        return _fit(config, run_dir, resume, progress, stop_after_epoch)
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                run_dir.rmdir()  # only if still empty
        raise


def _fit(
    config: TrainConfig, run_dir: Path, resume: bool, progress: bool, stop_after_epoch: int | None
) -> FitResult:
    started = time.perf_counter()
    validate_train_config(config)
    device = resolve_device(config.device)
    ctx = _init_distributed(device)
    if ctx.enabled and device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    seed_everything(config.seed + ctx.rank)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not config.data.root:
        raise TrainingError("data.root is not set (pass data.root=DIR)")

    root = Path(config.data.root)
    train_frames = load_dataset(config.data.kind, root, config.data.train_split, **config.data.options)
    train_frames = _subsample(train_frames.select_cameras(config.data.cameras), config.data.max_frames)
    if len(train_frames) == 0:
        raise TrainingError(f"the {config.data.train_split} split of {root} has no frames")
    rig = train_frames.rig
    yaw_step = config.model.track_yaw_step
    if config.model.track_tta:
        try:
            yaw_step = track_shift_yaw(rig)
        except ValueError as exc:
            raise TrainingError(f"model.track_tta: {exc}") from None
    model_config = replace(config.model, num_cameras=len(rig.cameras), track_yaw_step=yaw_step)
    size = (model_config.image_width, model_config.image_height)
    show = progress and ctx.is_main
    train_set = _pose_dataset(train_frames, size, config, show, ctx.is_main, "train")
    if len(train_set) == 0:
        raise TrainingError(f"none of the {len(train_frames)} train frames of {root} has readable images")
    train_frames = train_set.frame_list  # without the skipped frames, for the statistics below
    val_set = None
    if config.data.val_split:
        val_frames = load_dataset(config.data.kind, root, config.data.val_split, **config.data.options)
        val_frames = val_frames.select_cameras(config.data.cameras)
        if len(val_frames):
            val_set = _pose_dataset(val_frames, size, config, show, ctx.is_main, "val")
            val_set = val_set if len(val_set) else None

    model = build_model(model_config)
    t_train = train_frames.translations()
    model.set_translation_stats(torch.from_numpy(t_train.mean(axis=0)), torch.from_numpy(t_train.std(axis=0)))
    tuple_length = required_tuple_length(config.loss.name, config.loss.params)
    if model_config.aux_odometry:
        tuple_length = max(tuple_length, 2)
    loss = build_loss(config.loss.name, config.loss.params, camera_spec(train_frames))
    objective = Objective(model, loss).to(device)
    augmenter = Augmenter(config.augment, rig, torch.Generator().manual_seed(config.seed + 1000 * ctx.rank))
    tuples = TupleDataset(train_set, tuple_length, config.data.tuple_skip)

    params = [p for p in objective.parameters() if p.requires_grad]
    opt_cls = torch.optim.AdamW if config.optim.optimizer == "adamw" else torch.optim.Adam
    optimizer = opt_cls(params, lr=config.optim.lr, weight_decay=config.optim.weight_decay)
    sampler: DistributedSampler[dict[str, torch.Tensor]] | None = None
    if ctx.enabled:
        sampler = DistributedSampler(tuples, ctx.world_size, ctx.rank, shuffle=True, seed=config.seed)
    loader_gen = torch.Generator().manual_seed(config.seed)
    loader = DataLoader(
        tuples,
        batch_size=config.optim.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        drop_last=len(tuples) > config.optim.batch_size * ctx.world_size,
        num_workers=config.num_workers,
        generator=loader_gen,
    )
    steps_per_epoch = max(1, len(loader))
    total_steps = steps_per_epoch * config.optim.epochs
    warmup_steps = int(config.optim.warmup_epochs * steps_per_epoch)
    use_amp = config.optim.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    start_epoch, best_score, best_epoch, best_metrics, global_step = 0, math.inf, -1, {}, 0
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    if resume:
        state = load_checkpoint(last_path, map_location=device)
        model.load_state_dict(state["model"])
        loss.load_state_dict(state["loss"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, global_step = int(state["epoch"]) + 1, int(state["global_step"])
        best_score, best_epoch = float(state["best_score"]), int(state["best_epoch"])
        best_metrics = dict(state.get("best_metrics", {}))
        torch.set_rng_state(state["rng"]["torch"])
        augmenter.generator.set_state(state["rng"]["augment"])
        if ctx.is_main:
            print(f"fit: resuming {last_path} at epoch {start_epoch + 1}/{config.optim.epochs}")

    train_model: nn.Module = DistributedDataParallel(objective) if ctx.enabled else objective
    board = _TensorBoard(run_dir / "tensorboard", config.tensorboard and ctx.is_main)
    base_payload = {
        "config": to_mapping(config),
        "model_config": model_config_mapping(model_config),
        "rig": rig.to_dict(),
        "dataset": {
            "kind": config.data.kind,
            "root": str(root),
            "train_split": config.data.train_split,
            "train_frames": len(train_frames),
            "name": train_frames.name,
        },
    }
    images_seen, train_seconds = 0, 0.0
    end_epoch = (
        config.optim.epochs if stop_after_epoch is None else min(stop_after_epoch, config.optim.epochs)
    )
    saved_epoch: int | None = start_epoch if resume else None  # 1-based epoch that last.pt holds
    epoch = start_epoch
    try:
        for epoch in range(start_epoch, end_epoch):
            objective.train()
            if sampler is not None:
                sampler.set_epoch(epoch)
            loader_gen.manual_seed(config.seed * 1000 + epoch)  # an epoch's order does not depend on resumes
            sums: dict[str, float] = {}
            epoch_start = time.perf_counter()
            with tqdm(
                total=steps_per_epoch,
                desc=f"epoch {epoch + 1}/{config.optim.epochs}",
                disable=not show,
                unit="batch",
                leave=False,
            ) as bar:
                for batch in _batches(loader):
                    for group in optimizer.param_groups:
                        group["lr"] = config.optim.lr * lr_factor(
                            global_step, total_steps, warmup_steps, config, steps_per_epoch
                        )
                    b, k = batch["t"].shape[:2]
                    images = images_to_unit_float(batch["images"].flatten(0, 1))
                    t, q = batch["t"].flatten(0, 1), batch["q"].flatten(0, 1)
                    images, t, q = augmenter(images, t, q)
                    images, t, q = (
                        images.to(device),
                        t.to(device).reshape(b, k, 3),
                        q.to(device).reshape(b, k, 4),
                    )
                    masks = model.random_masks(b * k, 1, device=device)
                    with torch.autocast(device.type, enabled=use_amp):
                        parts = train_model(images, masks, t, q, global_step)
                    total = parts["total"]
                    if not torch.isfinite(total):
                        raise TrainingError(
                            _non_finite_message(
                                parts, epoch + 1, config.optim.epochs, global_step, last_path, saved_epoch
                            )
                        )
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(total).backward()
                    if config.optim.grad_clip > 0:
                        scaler.unscale_(optimizer)
                        torch.nn.utils.clip_grad_norm_(params, config.optim.grad_clip)
                    scaler.step(optimizer)
                    scaler.update()
                    global_step += 1
                    images_seen += b * k * ctx.world_size
                    for key, value in parts.items():
                        sums[key] = sums.get(key, 0.0) + float(value.detach())
                    bar.set_postfix(loss=f"{total.item():.3f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
                    bar.update()
            train_seconds += time.perf_counter() - epoch_start
            train_means = {key: value / steps_per_epoch for key, value in sums.items()}
            metrics: dict[str, float] = {}
            if ctx.is_main:
                board.scalars({**train_means, "lr": optimizer.param_groups[0]["lr"]}, epoch + 1, "train")
                is_eval_epoch = (epoch + 1) % config.eval_every == 0 or epoch + 1 == config.optim.epochs
                if val_set is not None and is_eval_epoch:
                    t_pred, q_pred = predict(model, val_set, device)
                    metrics = median_errors(val_set, t_pred[:, 0], q_pred[:, 0])
                    board.scalars(metrics, epoch + 1, "val")
                    score = selection_score(metrics)
                else:
                    score = train_means["total"] if val_set is None else math.inf
                improved = score < best_score
                if improved:
                    best_score, best_epoch, best_metrics = score, epoch, metrics
                payload = {
                    **base_payload,
                    "model": model.state_dict(),
                    "loss": loss.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "epoch": epoch,
                    "global_step": global_step,
                    "best_score": best_score,
                    "best_epoch": best_epoch,
                    "best_metrics": best_metrics,
                    "metrics": metrics,
                    "train_loss": train_means,
                    "rng": {"torch": torch.get_rng_state(), "augment": augmenter.generator.get_state()},
                }
                with _deferred_interrupt():
                    # best.pt before last.pt: a kill between the two then repeats this epoch on resume
                    # (and rewrites the same best.pt) instead of leaving a best.pt older than last.pt says.
                    try:
                        if improved:
                            save_checkpoint(best_path, payload)
                        save_checkpoint(last_path, payload)
                    except CheckpointWriteError as exc:
                        message = _save_failed_message(
                            exc, epoch + 1, config.optim.epochs, last_path, saved_epoch
                        )
                        disk_full = exc.code in (errno.ENOSPC, errno.EDQUOT)
                        raise CheckpointSaveError(message, saved_epoch is not None, disk_full) from None
                    saved_epoch = epoch + 1
                summary = f"epoch {epoch + 1}/{config.optim.epochs}: loss {train_means['total']:.4f}"
                if metrics:
                    summary += (
                        f", val median {metrics['median_translation_m']:.3f} m "
                        f"{metrics['median_rotation_deg']:.2f} deg"
                    )
                print(summary + (" (best)" if improved else ""), flush=True)
            if ctx.enabled:
                dist.barrier()
            saved_epoch = epoch + 1  # by the main process, which every process has waited for
    except KeyboardInterrupt:
        board.close()
        raise TrainingInterrupted(
            epoch + 1, config.optim.epochs, global_step, last_path, saved_epoch
        ) from None
    board.close()
    if ctx.enabled:
        dist.destroy_process_group()
    return FitResult(
        run_dir,
        config.optim.epochs,
        best_epoch + 1,
        best_metrics,
        images_seen / max(train_seconds, 1e-9),
        time.perf_counter() - started,
    )
