"""Checkpoints: everything needed to resume training, evaluate or export, in one file.

Written atomically (temporary file + rename), so a crash or Ctrl-C never leaves a truncated
checkpoint; read with `weights_only=True`, so loading never runs pickled code.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from pose_regressor.rig import Rig
from pose_regressor_training.models import ModelConfig, PoseRegressor, build_model
from pose_regressor_training.typed_config import from_mapping, to_mapping

FORMAT = "pose_regressor_checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or of another format."""


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write `path` so that it always holds either the old or the new checkpoint, whole.

    Ctrl-C or SIGKILL while writing can only leave `PATH.tmp` behind (rewritten next time); the
    fsyncs make the file and the rename survive a power loss too.
    """
    payload = {"format": FORMAT, "version": VERSION, **payload}
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as handle:
        torch.save(payload, handle)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)  # os.replace: atomic on POSIX and Windows
    _fsync_directory(path.parent)


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
    config = from_mapping(ModelConfig, payload["model_config"])
    # Weights come from the checkpoint; never download pretrained ones again.
    model = build_model(replace(config, pretrained=False))
    model.load_state_dict(payload["model"])
    model.eval()
    return model


def rig_from_checkpoint(payload: dict[str, Any]) -> Rig:
    return Rig.from_dict(payload["rig"])


def model_config_mapping(config: ModelConfig) -> dict[str, Any]:
    return to_mapping(config)
