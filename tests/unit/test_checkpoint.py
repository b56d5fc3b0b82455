"""The typed checkpoint record: one writer, one reader, the on-disk keys of every version so far."""

from __future__ import annotations

import math
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from pose_regressor.rig import preset_rig
from pose_regressor_training.checkpoint import (
    FORMAT,
    VERSION,
    Checkpoint,
    CheckpointError,
    DatasetInfo,
    ResumeState,
    load_checkpoint,
    save_checkpoint,
)
from pose_regressor_training.models import ModelConfig
from pose_regressor_training.train_config import TrainConfig
from pose_regressor_training.typed_config import to_mapping

# The keys `fit` has written since checkpoint version 1: files written before the record must load.
KEYS_ON_DISK = {
    "format", "version", "config", "model_config", "rig", "dataset", "model", "loss", "optimizer",
    "epoch", "global_step", "best_score", "best_epoch", "best_metrics", "metrics", "train_loss", "rng",
}  # fmt: skip


def trained_checkpoint() -> Checkpoint:
    config = TrainConfig()
    config = replace(config, seed=3, data=replace(config.data, root="/data", cameras=("left", "right")))
    return Checkpoint(
        model_config=ModelConfig(num_cameras=2, hidden_dim=8),
        model={"fc.weight": torch.arange(6.0).reshape(2, 3)},
        rig=preset_rig("stereo", 64, 48),
        config=config,
        dataset=DatasetInfo("folder", "/data", "train", 17, "synthetic"),
        epoch=4,
        metrics={"median_translation_m": 0.5},
        train_loss={"total": 1.25},
        best_score=0.75,
        best_epoch=3,
        best_metrics={"median_translation_m": 0.4},
        resume=ResumeState(
            loss={"s_t": torch.tensor(0.5)},
            optimizer={"state": {}, "param_groups": [{"lr": 0.01, "params": [0]}]},
            global_step=40,
            torch_rng=torch.get_rng_state(),
            augment_rng=torch.Generator().manual_seed(5).get_state(),
        ),
    )


def assert_same(a: Checkpoint, b: Checkpoint) -> None:
    assert (a.model_config, a.config, a.dataset) == (b.model_config, b.config, b.dataset)
    assert a.rig.to_dict() == b.rig.to_dict()
    assert (a.epoch, a.best_score, a.best_epoch) == (b.epoch, b.best_score, b.best_epoch)
    assert (a.metrics, a.train_loss, a.best_metrics) == (b.metrics, b.train_loss, b.best_metrics)
    assert a.model.keys() == b.model.keys() and all(torch.equal(a.model[k], b.model[k]) for k in a.model)
    assert a.resume is not None and b.resume is not None
    assert a.resume.global_step == b.resume.global_step and a.resume.optimizer == b.resume.optimizer
    assert torch.equal(a.resume.loss["s_t"], b.resume.loss["s_t"])
    assert torch.equal(a.resume.torch_rng, b.resume.torch_rng)
    assert torch.equal(a.resume.augment_rng, b.resume.augment_rng)


def test_a_checkpoint_reads_back_as_written_with_the_same_keys_on_disk(tmp_path: Path) -> None:
    original = trained_checkpoint()
    save_checkpoint(tmp_path / "last.pt", original)
    assert set(torch.load(tmp_path / "last.pt", weights_only=True)) == KEYS_ON_DISK
    assert_same(load_checkpoint(tmp_path / "last.pt"), original)


def test_a_checkpoint_written_as_a_plain_dict_by_the_previous_version_loads(tmp_path: Path) -> None:
    c = trained_checkpoint()
    assert c.resume is not None
    previous: dict[str, Any] = {  # what train.py wrote before the record existed (version 1)
        "format": FORMAT,
        "version": 1,
        "config": to_mapping(c.config),
        "model_config": to_mapping(c.model_config),
        "rig": c.rig.to_dict(),
        "dataset": {"kind": "folder", "root": "/data", "train_split": "train", "train_frames": 17,
                    "name": "synthetic"},
        "model": c.model,
        "loss": c.resume.loss,
        "optimizer": c.resume.optimizer,
        "epoch": 3,  # version 1 counted from 0: the same epochs as the record's 4 and 3
        "global_step": 40,
        "best_score": 0.75,
        "best_epoch": 2,
        "best_metrics": c.best_metrics,
        "metrics": c.metrics,
        "train_loss": c.train_loss,
        "rng": {"torch": c.resume.torch_rng, "augment": c.resume.augment_rng},
    }  # fmt: skip
    torch.save(previous, tmp_path / "old.pt")
    assert_same(load_checkpoint(tmp_path / "old.pt"), c)


def test_a_version_1_checkpoint_without_a_best_epoch_reads_as_none_and_resumes_after_its_epoch(
    tmp_path: Path,
) -> None:
    save_checkpoint(tmp_path / "new.pt", trained_checkpoint())
    payload = torch.load(tmp_path / "new.pt", weights_only=True)
    assert (payload["version"], payload["epoch"], payload["best_epoch"]) == (VERSION, 4, 3)  # 1-based
    payload.update(version=1, epoch=0, best_epoch=-1)  # what fit wrote after its first epoch, none best
    torch.save(payload, tmp_path / "old.pt")
    loaded = load_checkpoint(tmp_path / "old.pt")
    assert (loaded.epoch, loaded.best_epoch) == (1, 0)


def test_a_weights_only_checkpoint_loads_with_defaults_and_cannot_resume(tmp_path: Path) -> None:
    rig = preset_rig("stereo", 64, 48)
    weights = {"format": FORMAT, "version": VERSION, "model_config": {"num_cameras": 2},
               "rig": rig.to_dict(), "model": {"w": torch.ones(2)}, "config": {},
               "dataset": {"kind": "folder", "root": "none"}}  # fmt: skip
    torch.save(weights, tmp_path / "hand_made.pt")
    loaded = load_checkpoint(tmp_path / "hand_made.pt")
    assert loaded.resume is None and loaded.epoch == 0 and loaded.best_score == math.inf
    assert loaded.config == TrainConfig() and loaded.dataset == DatasetInfo("folder", "none")
    save_checkpoint(tmp_path / "again.pt", loaded)
    assert "optimizer" not in torch.load(tmp_path / "again.pt", weights_only=True)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda p: p.pop("model_config"), "'model_config'"),
        (lambda p: p.update(rig={"cameras": "none"}), "a rig must be a mapping with a list under 'cameras'"),
        (lambda p: p["config"].update(epochs=3), "unknown key config.epochs"),
        (lambda p: p.update(rng={"torch": 1}), "'augment'"),
    ],
    ids=["no-model-config", "bad-rig", "unknown-config-key", "no-rng"],
)
def test_a_damaged_checkpoint_is_one_error_naming_the_file(tmp_path: Path, damage: Any, reason: str) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, trained_checkpoint())
    payload = torch.load(path, weights_only=True)
    damage(payload)
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=rf"^checkpoint {path} is damaged or incomplete: .*{reason}"):
        load_checkpoint(path)


class _NotAllowed:
    """A class torch's weights-only unpickler refuses."""


@pytest.mark.parametrize(
    ("write", "reason"),
    [
        (lambda p: p.write_bytes(b""), "the file is empty"),
        (
            lambda p: p.write_text("no checkpoint at all\n"),
            r"weights only load failed: .*\(Unsupported operand \d+\)",
        ),
        (
            lambda p: torch.save({"x": _NotAllowed()}, p),
            r"weights only load failed: .*\(Unsupported global: GLOBAL .*_NotAllowed was not an allowed .*\)",
        ),
        (None, r"damaged or truncated \(.+\)"),
    ],
    ids=["empty", "text", "pickled-object", "truncated"],
)
def test_an_unreadable_checkpoint_is_one_line_naming_why(tmp_path: Path, write: Any, reason: str) -> None:
    """torch's own messages run to a dozen lines advising weights_only=False; the error says in one
    line what is wrong with the file."""
    path = tmp_path / "best.pt"
    if write is not None:
        write(path)
    else:  # cut short at several places, as a copy stopped mid-way leaves it
        save_checkpoint(path, trained_checkpoint())
        whole = path.read_bytes()
    for cut in (0.25, 0.5, 0.99) if write is None else (1.0,):
        if write is None:
            path.write_bytes(whole[: int(len(whole) * cut)])
        with pytest.raises(CheckpointError) as caught:
            load_checkpoint(path)
        message = str(caught.value)
        assert "\n" not in message and "weights_only=False" not in message and len(message) < 400
        assert re.match(rf"^checkpoint {re.escape(str(path))} cannot be read: {reason}$", message), message
