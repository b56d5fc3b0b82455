"""Checkpoints: everything needed to resume training, evaluate or export, in one file.

`Checkpoint` is the typed record; `save_checkpoint` and `load_checkpoint` are its only writer and
reader, and the only code that knows the on-disk keys. On disk it is a plain dict of tensors and
YAML-safe values, read with `weights_only=True`, so loading never runs pickled code.

Written atomically (temporary file + rename), so a crash or Ctrl-C never leaves a truncated
checkpoint; a write that fails (disk full, quota, I/O error) removes its temporary file and raises
`CheckpointWriteError`, leaving the previous checkpoint as it was.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import IO, Any, cast

import torch

from pose_regressor.rig import Rig, RigError
from pose_regressor_training.models import ModelConfig, PoseRegressor, build_model
from pose_regressor_training.train_config import BOUNDS, TrainConfig
from pose_regressor_training.typed_config import ConfigError, from_mapping, to_mapping

FORMAT = "pose_regressor_checkpoint"
VERSION = 2  # 2: epochs are 1-based on disk as everywhere a user reads them (1 stored them 0-based)
READABLE_VERSIONS = (1, 2)


@dataclass(frozen=True)
class DatasetInfo:
    """Which data the model was trained on (for eval's default data root and the bundle's provenance)."""

    kind: str = "folder"
    root: str = ""
    train_split: str = ""
    train_frames: int = 0
    name: str = ""
    # what positions are in: "m", or "units" for a folder imported without a metric scale
    length_unit: str = "m"


@dataclass
class ResumeState:
    """What `fit --resume` needs beyond the weights to continue bit for bit."""

    loss: dict[str, torch.Tensor]  # the loss's learned weights (e.g. homoscedastic s_t, s_q)
    optimizer: dict[str, Any]
    global_step: int
    torch_rng: torch.Tensor
    augment_rng: torch.Tensor
    # The weights being trained, where `Checkpoint.model` holds their moving average instead
    # (optim.ema_decay > 0); None: `Checkpoint.model` is what is being trained.
    live_model: dict[str, torch.Tensor] | None = None
    # The epochs that optim.time_budget_minutes planned (at most optim.epochs); None: no budget.
    # A resume keeps the plan, so the learning-rate schedule goes on as it was.
    planned_epochs: int | None = None


@dataclass
class Checkpoint:
    """One checkpoint (RUN_DIR/last.pt or best.pt): the model and how it was trained."""

    model_config: ModelConfig
    model: dict[str, torch.Tensor]  # the model's state_dict
    rig: Rig
    config: TrainConfig = field(default_factory=TrainConfig)
    dataset: DatasetInfo = field(default_factory=DatasetInfo)
    epoch: int = 0  # 1-based epoch whose end this holds (= epochs done; 0: made outside `fit`)
    metrics: dict[str, float] = field(default_factory=dict)  # validation of this epoch ({}: none)
    train_loss: dict[str, float] = field(default_factory=dict)  # mean loss parts of this epoch
    best_score: float = math.inf  # what best.pt minimizes, see trainer.selection_score
    best_epoch: int = 0  # 1-based epoch that best.pt holds; 0: none yet
    best_metrics: dict[str, float] = field(default_factory=dict)
    resume: ResumeState | None = None  # None: made outside `fit` (weights only), cannot be resumed


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or of another format."""


def weights_mismatch(exc: BaseException) -> str:
    """torch's load_state_dict complaint in one short line: the first tensors it names."""
    text = " ".join(str(exc).split())
    text = text.removeprefix("Error(s) in loading state_dict for PoseRegressor: ")
    return text if len(text) <= 300 else text[:297] + "..."


#: errno values of a write that failed for want of room or a working disk (not a program error).
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS})


class CheckpointWriteError(OSError):
    """A checkpoint could not be written; its temporary file is removed and `path` is untouched."""

    def __init__(self, path: Path, cause: BaseException, what: str = "checkpoint") -> None:
        self.path = path
        code = getattr(cause, "errno", None)
        if isinstance(cause, OSError) and code is not None:
            name = errno.errorcode.get(code, str(code))
            reason = f"{cause.strerror or os.strerror(code)} ({name})"
        else:
            reason = " ".join(str(cause).split()) or type(cause).__name__
        self.reason = reason
        self.code = code  # the errno (ENOSPC, EDQUOT, EFBIG, ...), None if torch failed otherwise
        super().__init__(f"could not write {what} {path}: {reason}")
        self.errno = code


class _RecordingWriter:
    """A file for `torch.save` that remembers the first OSError of a write: torch turns it into a
    RuntimeError ("unexpected pos ...") that does not say the disk is full."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return int(self.handle.write(data))
        except OSError as exc:
            self.error = self.error or exc
            raise

    def flush(self) -> None:
        self.handle.flush()


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Write `path` so that it always holds either the old or the new checkpoint, whole.

    Ctrl-C or SIGKILL while writing can only leave `PATH.tmp` behind (rewritten next time); the
    fsyncs make the file and the rename survive a power loss too. A write that fails (ENOSPC,
    EDQUOT, EFBIG, EIO, ...) removes `PATH.tmp` and raises `CheckpointWriteError` naming `path`
    and the reason; the file at `path` is then still the previous checkpoint (or absent).
    """
    payload = _to_payload(checkpoint)
    tmp = path.with_name(path.name + ".tmp")
    writer: _RecordingWriter | None = None
    try:
        with tmp.open("wb") as handle:
            writer = _RecordingWriter(handle)
            torch.save(payload, cast(IO[bytes], writer))  # torch needs only write() and flush()
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)  # os.replace: atomic on POSIX and Windows
    except (OSError, RuntimeError) as exc:
        _remove(tmp)
        cause: BaseException = writer.error if writer is not None and writer.error is not None else exc
        raise CheckpointWriteError(path, cause) from None
    except BaseException:
        _remove(tmp)  # Ctrl-C mid-write: no half file left behind either
        raise
    _fsync_directory(path.parent)


def write_torch_file(path: Path, obj: Any, what: str = "file") -> None:
    """`torch.save(obj)` into `path` (not atomic: for files in a staging folder). A failed write
    raises `CheckpointWriteError` with the OSError that caused it, not torch's "unexpected pos"."""
    writer: _RecordingWriter | None = None
    try:
        with path.open("wb") as handle:
            writer = _RecordingWriter(handle)
            torch.save(obj, cast(IO[bytes], writer))
    except (OSError, RuntimeError) as exc:
        cause: BaseException = writer.error if writer is not None and writer.error is not None else exc
        raise CheckpointWriteError(path, cause, what) from None


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):  # e.g. a failing disk: the next save rewrites it anyway
        path.unlink(missing_ok=True)


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. a platform without directory file descriptors
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on directories; the rename itself is still atomic
    finally:
        os.close(fd)


def unreadable_torch_file(path: Path, exc: BaseException) -> str:
    """Why `torch.load(path, weights_only=True)` failed with `exc`, in one line. torch's own
    messages run to a dozen lines of advice on `weights_only=False`, which is exactly what must not
    be done with a file of unknown origin: it runs whatever the file pickled."""
    with contextlib.suppress(OSError):
        if path.stat().st_size == 0:
            return "the file is empty"
    text = str(exc)
    marker = "WeightsUnpickler error:"
    if marker in text:
        detail = " ".join(text.split(marker, 1)[1].strip().split("\n\n", 1)[0].split()).split(". ")[0]
        return (
            "weights only load failed: it is not a file that pose-train wrote, or it holds pickled "
            f"objects, which are never loaded ({detail[:160]})"
        )
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
    zipped = False  # torch.save writes a zip archive: one that fails to load is cut short or damaged
    with contextlib.suppress(OSError), path.open("rb") as stream:
        zipped = stream.read(4) == b"PK\x03\x04"
    if zipped or "zip archive" in first:
        return f"damaged or truncated ({first.split('. ')[0][:160]})"
    return first[:200]


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """The checkpoint at `path`; `CheckpointError` names the file when it is missing, unreadable, of
    another format or holds values that do not fit the record."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for truncated or foreign files
        reason = unreadable_torch_file(path, exc)
        raise CheckpointError(f"checkpoint {path} cannot be read: {reason}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a pose_regressor checkpoint")
    if payload.get("version") not in READABLE_VERSIONS:
        raise CheckpointError(f"{path}: checkpoint version {payload.get('version')} is not supported")
    try:
        return _from_payload(payload)
    except (ConfigError, RigError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} is damaged or incomplete: {exc}") from None


def _to_payload(checkpoint: Checkpoint) -> dict[str, Any]:
    """The on-disk dict; its keys are those of every version so far, so old files still load."""
    c = checkpoint
    payload: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "config": to_mapping(c.config),
        "model_config": to_mapping(c.model_config),
        "rig": c.rig.to_dict(),
        "dataset": asdict(c.dataset),
        "model": c.model,
        "epoch": c.epoch,
        "best_score": c.best_score,
        "best_epoch": c.best_epoch,
        "best_metrics": c.best_metrics,
        "metrics": c.metrics,
        "train_loss": c.train_loss,
    }
    if c.resume is not None:
        payload["loss"] = c.resume.loss
        payload["optimizer"] = c.resume.optimizer
        payload["global_step"] = c.resume.global_step
        payload["rng"] = {"torch": c.resume.torch_rng, "augment": c.resume.augment_rng}
        if c.resume.live_model is not None:
            payload["live_model"] = c.resume.live_model
        if c.resume.planned_epochs is not None:
            payload["planned_epochs"] = c.resume.planned_epochs
    return payload


def _from_payload(payload: dict[str, Any]) -> Checkpoint:
    # version 1 counted epochs from 0 (best_epoch -1: none); without the key nothing was trained
    shift = 1 if payload.get("version") == 1 else 0
    epoch = int(payload["epoch"]) + shift if "epoch" in payload else 0
    best_epoch = int(payload["best_epoch"]) + shift if "best_epoch" in payload else 0
    resume = None
    if "optimizer" in payload:  # written by `fit`; hand-made checkpoints hold weights only
        resume = ResumeState(
            loss=dict(payload["loss"]),
            optimizer=dict(payload["optimizer"]),
            global_step=int(payload["global_step"]),
            torch_rng=payload["rng"]["torch"],
            augment_rng=payload["rng"]["augment"],
            live_model=dict(payload["live_model"]) if "live_model" in payload else None,
            planned_epochs=int(payload["planned_epochs"]) if "planned_epochs" in payload else None,
        )
    return Checkpoint(
        model_config=from_mapping(ModelConfig, payload["model_config"], "model", BOUNDS),
        model=dict(payload["model"]),
        rig=Rig.from_dict(payload["rig"]),
        config=from_mapping(TrainConfig, payload.get("config", {}), "config"),
        dataset=from_mapping(DatasetInfo, payload.get("dataset", {}), "dataset"),
        epoch=epoch,
        metrics=dict(payload.get("metrics", {})),
        train_loss=dict(payload.get("train_loss", {})),
        best_score=float(payload.get("best_score", math.inf)),
        best_epoch=best_epoch,
        best_metrics=dict(payload.get("best_metrics", {})),
        resume=resume,
    )


def model_from_checkpoint(checkpoint: Checkpoint, source: Path | None = None) -> PoseRegressor:
    """The trained model (eval mode) rebuilt from the config stored in the checkpoint; a
    `CheckpointError` naming `source` (the file, where known) when the weights do not fit it."""
    # Weights come from the checkpoint; never download pretrained ones again.
    model = build_model(replace(checkpoint.model_config, pretrained=False))
    try:
        model.load_state_dict(checkpoint.model)
    except (RuntimeError, KeyError, TypeError) as exc:  # torch lists every missing and odd tensor
        raise CheckpointError(
            f"checkpoint {source if source is not None else f'of epoch {checkpoint.epoch}'} is damaged or "
            f"incomplete: its weights do not fit its own model config ({weights_mismatch(exc)})"
        ) from None
    model.eval()
    return model
