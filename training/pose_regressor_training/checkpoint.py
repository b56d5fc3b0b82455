"""Checkpoints: everything needed to resume training, evaluate or export, in one file.

Written atomically (temporary file + rename), so a crash or Ctrl-C never leaves a truncated
checkpoint; a write that fails (disk full, quota, I/O error) removes its temporary file and raises
`CheckpointWriteError`, leaving the previous checkpoint as it was. Read with `weights_only=True`, so
loading never runs pickled code.
"""

from __future__ import annotations

import contextlib
import errno
import os
from dataclasses import replace
from pathlib import Path
from typing import IO, Any, cast

import torch

from pose_regressor.rig import Rig
from pose_regressor_training.models import ModelConfig, PoseRegressor, build_model
from pose_regressor_training.train_config import BOUNDS
from pose_regressor_training.typed_config import from_mapping, to_mapping

FORMAT = "pose_regressor_checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or of another format."""


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


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write `path` so that it always holds either the old or the new checkpoint, whole.

    Ctrl-C or SIGKILL while writing can only leave `PATH.tmp` behind (rewritten next time); the
    fsyncs make the file and the rename survive a power loss too. A write that fails (ENOSPC,
    EDQUOT, EFBIG, EIO, ...) removes `PATH.tmp` and raises `CheckpointWriteError` naming `path`
    and the reason; the file at `path` is then still the previous checkpoint (or absent).
    """
    payload = {"format": FORMAT, "version": VERSION, **payload}
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


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for truncated or foreign files
        raise CheckpointError(f"checkpoint {path} cannot be read: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a pose_regressor checkpoint")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {payload.get('version')} is not supported")
    return payload


def model_from_checkpoint(payload: dict[str, Any]) -> PoseRegressor:
    """The trained model (eval mode) rebuilt from the config stored in the checkpoint."""
    config = from_mapping(ModelConfig, payload["model_config"], "model", BOUNDS)
    # Weights come from the checkpoint; never download pretrained ones again.
    model = build_model(replace(config, pretrained=False))
    model.load_state_dict(payload["model"])
    model.eval()
    return model


def rig_from_checkpoint(payload: dict[str, Any]) -> Rig:
    return Rig.from_dict(payload["rig"])


def model_config_mapping(config: ModelConfig) -> dict[str, Any]:
    return to_mapping(config)
