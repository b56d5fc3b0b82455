"""The data of one `fit`: the train and val splits as datasets, the tuples the loss needs, the loader."""

from __future__ import annotations

import math
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from pose_regressor.rig import Rig
from pose_regressor_training.checkpoint import DatasetInfo
from pose_regressor_training.data.dataset import FrameList, PoseDataset, describe_skipped
from pose_regressor_training.data.sources import length_unit_of, load_dataset
from pose_regressor_training.distributed import DistributedContext
from pose_regressor_training.errors import TrainingError
from pose_regressor_training.losses import CameraSpec, required_tuple_length
from pose_regressor_training.models import ModelConfig
from pose_regressor_training.rig_symmetry import track_shift_yaw
from pose_regressor_training.stop_signals import leave_stop_signals_to_parent
from pose_regressor_training.train_config import TrainConfig, parse_fold

Batch = dict[str, torch.Tensor]


class TupleDataset(Dataset[Batch]):
    """Samples of K frames i, i + skip, ..., i + (K - 1) skip of one sequence, stacked on dim 0."""

    def __init__(self, base: PoseDataset, length: int, skip: int) -> None:
        self.base, self.length, self.skip = base, length, skip
        frames = base.frame_list.frames
        span = (length - 1) * skip
        self.starts = [
            i
            for i in range(len(frames) - span)
            # a tuple never spans two sequences: their poses are not consecutive
            if all(frames[i + k * skip].sequence == frames[i].sequence for k in range(length))
        ]
        if not self.starts:
            raise TrainingError(f"no tuples of {length} frames with skip {skip} fit in any sequence")

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> Batch:
        start = self.starts[index]
        items = [self.base[start + k * self.skip] for k in range(self.length)]
        return {key: torch.stack([item[key] for item in items]) for key in items[0]}


@dataclass
class TrainingData:
    model_config: ModelConfig  # config.model completed by the rig (cameras, track yaw step)
    train_frames: FrameList  # without the frames skipped for unreadable images
    train_set: PoseDataset
    tuples: TupleDataset
    val_set: PoseDataset | None  # None: no validation split, or nothing readable in it
    info: DatasetInfo

    @property
    def rig(self) -> Rig:
        return self.train_frames.rig

    def translation_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation of the training positions (the model normalizes by them)."""
        t = self.train_frames.translations()
        return torch.from_numpy(t.mean(axis=0)), torch.from_numpy(t.std(axis=0))


#: How far (as a ratio) a camera's aspect may be from the model input's before `fit` warns.
STRETCH_TOLERANCE = 1.1


def stretch_warning(rig: Rig, size: tuple[int, int]) -> str | None:
    """A warning when the model input (width, height) stretches a camera's images, which every
    image then is, on the robot too: a portrait phone video into the landscape default, say."""
    width, height = size
    for camera in rig.cameras:
        shape = camera.intrinsics
        aspect = shape.width / shape.height
        stretch = aspect / (width / height)
        factor = max(stretch, 1 / stretch)
        if factor > STRETCH_TOLERANCE:
            # the same pixel count at the camera's aspect, in multiples of 8
            w = max(8, round(math.sqrt(width * height * aspect) / 8) * 8)
            h = max(8, round(math.sqrt(width * height / aspect) / 8) * 8)
            return (
                f"fit: warning: camera {camera.name!r} is {shape.width}x{shape.height} but the model "
                f"input is {width}x{height}, so every image is stretched {factor:.2f}x in "
                f"{'width' if stretch < 1 else 'height'}; model.image_width={w} model.image_height={h} "
                "keeps its shape at about the same pixel count"
            )
    return None


def load_training_data(config: TrainConfig, progress: bool, report: bool) -> TrainingData:
    """Loads the splits named in `config.data`; `report`: print what data.skip_bad left out."""
    if not config.data.root:
        raise TrainingError("data.root is not set (pass data.root=DIR)")
    root, data = Path(config.data.root), config.data
    frames = load_dataset(data.kind, root, data.train_split, **data.options)
    frames = subsample_frames(frames.select_cameras(data.cameras), data.max_frames)
    if len(frames) == 0:
        raise TrainingError(f"the {data.train_split} split of {root} has no frames")
    if data.holdout_fold:
        frames, _ = split_fold(frames, data.holdout_fold)
    model_config = _complete_model_config(config, frames.rig)
    size = (model_config.image_width, model_config.image_height)
    warning = stretch_warning(frames.rig, size)
    if warning and report:
        print(warning, flush=True)
    train_set = _pose_dataset(frames, size, config, progress, report, "train")
    if len(train_set) == 0:
        raise TrainingError(f"none of the {len(frames)} train frames of {root} has readable images")
    val_set = None
    if data.val_split:
        val_frames = load_dataset(data.kind, root, data.val_split, **data.options)
        val_frames = val_frames.select_cameras(data.cameras)
        if len(val_frames):
            val_set = _pose_dataset(val_frames, size, config, progress, report, "val")
            val_set = val_set if len(val_set) else None
    tuple_length = required_tuple_length(config.loss.name, config.loss.params)
    if model_config.aux_odometry:
        tuple_length = max(tuple_length, 2)  # odometry compares consecutive frames
    tuples = TupleDataset(train_set, tuple_length, data.tuple_skip)
    kept = train_set.frame_list
    unit = length_unit_of(data.kind, root)
    info = DatasetInfo(data.kind, str(root), data.train_split, len(kept), kept.name, unit)
    return TrainingData(model_config, kept, train_set, tuples, val_set, info)


def make_loader(
    tuples: TupleDataset, config: TrainConfig, ctx: DistributedContext
) -> tuple[DataLoader[Batch], DistributedSampler[Batch] | None, torch.Generator]:
    """The training loader, its DDP sampler (None in one process) and the generator of its order."""
    sampler: DistributedSampler[Batch] | None = None
    if ctx.enabled:
        sampler = DistributedSampler(tuples, ctx.world_size, ctx.rank, shuffle=True, seed=config.seed)
    order = torch.Generator().manual_seed(config.seed)
    loader = DataLoader(
        tuples,
        batch_size=config.optim.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        # drop a ragged last batch, but never the only one: a tiny dataset must still train
        drop_last=len(tuples) > config.optim.batch_size * ctx.world_size,
        num_workers=config.num_workers,
        generator=order,
        # Workers leave Ctrl-C and SIGTERM to this process, which stops them.
        worker_init_fn=_worker_init,
    )
    return loader, sampler, order


def _worker_init(_worker_id: int) -> None:
    leave_stop_signals_to_parent()
    sys.excepthook = _quiet_in_the_fd_sharing_thread(sys.excepthook)


def _quiet_in_the_fd_sharing_thread(
    hook: Callable[[type[BaseException], BaseException, TracebackType | None], object],
) -> Callable[[type[BaseException], BaseException, TracebackType | None], object]:
    """`hook`, silent in multiprocessing's fd-sharing thread. A worker hands batch tensors to the
    parent through that thread; when the parent stops mid-handover (Ctrl-C), the thread prints a
    traceback into the terminal after the parent's one-line message. The parent reports the stop,
    and a handover that fails while the parent lives fails there too, so nothing is lost."""

    def quiet(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> object:
        if threading.current_thread().name.endswith("(_serve)"):  # resource_sharer's thread
            return None
        return hook(kind, value, tb)

    return quiet


def camera_spec(frame_list: FrameList) -> CameraSpec:
    """The first camera of the rig, as the reprojection losses see it."""
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


def _complete_model_config(config: TrainConfig, rig: Rig) -> ModelConfig:
    """config.model with the rig's camera count and, with model.track_tta, the rig's yaw step."""
    yaw_step = config.model.track_yaw_step
    if config.model.track_tta:
        try:
            yaw_step = track_shift_yaw(rig)
        except ValueError as exc:
            raise TrainingError(
                f"model.track_tta: {exc} (a rig without that symmetry, cameras calibrated one by one: "
                "model.track_tta=false model.shift_variance=false augment.track=false)"
            ) from None
    return replace(config.model, num_cameras=len(rig.cameras), track_yaw_step=yaw_step)


# Below this many trajectories, whole ones are too coarse a unit to subsample by.
MIN_SEQUENCES_TO_SUBSAMPLE = 8


def subsample_frames(frame_list: FrameList, max_frames: int) -> FrameList:
    """About `max_frames` frames spread over the whole recording, not its first ones: whole
    trajectories, evenly spaced, so that tuple losses (relative, geometric, siamese) still see
    consecutive frames; every k-th frame when there are too few trajectories for that."""
    if max_frames <= 0 or len(frame_list) <= max_frames:
        return frame_list
    frames = frame_list.frames
    sequences = list(dict.fromkeys(f.sequence for f in frames))  # in recording order
    if len(sequences) >= MIN_SEQUENCES_TO_SUBSAMPLE:
        wanted = max(1, round(len(sequences) * max_frames / len(frames)))
        picks = np.linspace(0, len(sequences) - 1, wanted).round().astype(int)
        chosen = {sequences[i] for i in picks.tolist()}
        return frame_list.subset([i for i, f in enumerate(frames) if f.sequence in chosen])
    keep = np.linspace(0, len(frame_list) - 1, max_frames).round().astype(int)
    return frame_list.subset(sorted(set(keep.tolist())))


def split_fold(frame_list: FrameList, fold: str) -> tuple[FrameList, FrameList]:
    """(the frames kept, the frames held out) for `data.holdout_fold` = "k/K": whole trajectories,
    sequence i (in recording order) held out when i mod K = k - 1, so that the K folds interleave
    along the recording (an imported video's blocks alternate between folds)."""
    k, count = parse_fold(fold)
    sequences = list(dict.fromkeys(f.sequence for f in frame_list.frames))
    if len(sequences) < count:
        raise TrainingError(
            f"data.holdout_fold={fold}: the training split has {len(sequences)} trajector"
            f"{'y' if len(sequences) == 1 else 'ies'}, fewer than the {count} folds"
        )
    held = set(sequences[k - 1 :: count])
    frames = frame_list.frames
    kept = frame_list.subset([i for i, f in enumerate(frames) if f.sequence not in held])
    out = frame_list.subset([i for i, f in enumerate(frames) if f.sequence in held])
    return kept, out


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
