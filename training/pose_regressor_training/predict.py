"""Inference over a dataset with a trained model: device choice, poses per frame, median errors.

Used by `fit` (validation), `eval` and `export`; nothing here trains.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from pose_regressor import pose
from pose_regressor_training.data.dataset import PoseDataset
from pose_regressor_training.ensemble import EnsembleRegressor
from pose_regressor_training.errors import TrainingError
from pose_regressor_training.models import PoseRegressor
from pose_regressor_training.models.model import images_to_unit_float


class CameraSets(Protocol):
    """What prediction reads of a dataset: its length and each set's images uint8 [T, H, W, 3]
    (a `PoseDataset`, or a view of one with a camera blacked out)."""

    def __len__(self) -> int: ...

    def images(self, index: int) -> np.ndarray: ...


def resolve_device(name: str) -> torch.device:
    """`auto`, `cpu` or `cuda` as a torch device; asking for a GPU that is not there is an error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("device: cuda was asked for but no CUDA GPU is available")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


@torch.no_grad()
def predict(
    model: PoseRegressor | EnsembleRegressor,
    dataset: CameraSets,
    device: torch.device,
    batch_size: int = 64,
    mc_samples: int = 0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Poses for every frame: deterministic (mask of ones; a model of K heads: their mean) -> t (N, 1, 3),
    q (N, 1, 4); with `mc_samples` = S > 0, S MC-dropout samples per frame -> (N, S, 3), (N, S, 4)."""
    t, q, _ = predict_outputs(model, dataset, device, batch_size, mc_samples, seed)
    return t, q


def predict_outputs(
    model: PoseRegressor | EnsembleRegressor,
    dataset: CameraSets,
    device: torch.device,
    batch_size: int = 64,
    mc_samples: int = 0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """`predict` plus the variance head's log-variances (N, S, 6) of the same masks (None without one)."""
    t, q, log_variance, _ = _predict(model, dataset, device, batch_size, mc_samples, seed, False)
    return t, q, log_variance


def predict_with_deterministic(
    model: PoseRegressor | EnsembleRegressor,
    dataset: CameraSets,
    device: torch.device,
    batch_size: int = 64,
    mc_samples: int = 0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, tuple[np.ndarray, np.ndarray]]:
    """`predict_outputs` and the deterministic pose (mask of ones) -> (t (N, 3), q (N, 4)), from one
    pass of the backbone: the ones mask rides as one more sample after the S random ones, which are
    drawn exactly as `predict_outputs` draws them. An ensemble's deterministic pose is the mean of
    its K members' (K more rows of ones: K consecutive rows reach every member once)."""
    t, q, log_variance, deterministic = _predict(model, dataset, device, batch_size, mc_samples, seed, True)
    assert deterministic is not None
    return t, q, log_variance, deterministic


@torch.no_grad()
def _predict(
    model: PoseRegressor | EnsembleRegressor,
    dataset: CameraSets,
    device: torch.device,
    batch_size: int,
    mc_samples: int,
    seed: int,
    deterministic_too: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, tuple[np.ndarray, np.ndarray] | None]:
    model.eval()
    # masks drawn on the CPU: the same seed gives the same MC samples on any device
    generator = torch.Generator(device="cpu").manual_seed(seed)
    ones_rows = model.size if isinstance(model, EnsembleRegressor) else model.config.heads
    extra = ones_rows if deterministic_too and mc_samples > 0 else 0
    ts, qs, log_variances = [], [], []
    for start in range(0, len(dataset), batch_size):
        idx = range(start, min(start + batch_size, len(dataset)))
        images = torch.stack([torch.from_numpy(dataset.images(i)) for i in idx])
        x = images_to_unit_float(images).to(device)
        masks = None
        if mc_samples > 0:
            masks = model.random_masks(1, mc_samples, generator)
            if extra:
                masks = torch.cat([masks, torch.ones(1, extra, model.mask_dim)], dim=1)
            masks = masks.to(device)
        out = model(x, masks)
        ts.append(out.t.double().cpu().numpy())
        qs.append(out.q.double().cpu().numpy())
        if out.log_variance is not None:
            log_variances.append(out.log_variance.double().cpu().numpy())
    t, q = np.concatenate(ts), np.concatenate(qs)
    log_variance = np.concatenate(log_variances) if log_variances else None
    deterministic = None
    if deterministic_too:
        # the rows of ones: appended after the MC samples, or without them all the model gives
        # (one, or an ensemble's K)
        deterministic = (t[:, -1], q[:, -1])
        if ones_rows > 1:
            rows = slice(-ones_rows, None)
            means = [pose.mean_pose(t_f, q_f) for t_f, q_f in zip(t[:, rows], q[:, rows], strict=True)]
            deterministic = (np.stack([m[0] for m in means]), np.stack([m[1] for m in means]))
    if mc_samples == 0 and not isinstance(model, EnsembleRegressor) and ones_rows > 1:
        # a model of K heads without MC samples: its pose is the heads' mean
        means = [pose.mean_pose(t_f, q_f) for t_f, q_f in zip(t, q, strict=True)]
        t, q = np.stack([m[0] for m in means])[:, None], np.stack([m[1] for m in means])[:, None]
        log_variance = None
    if extra:
        t, q = t[:, :-extra], q[:, :-extra]
        log_variance = log_variance[:, :-extra] if log_variance is not None else None
    return t, q, log_variance, deterministic


def median_errors(dataset: PoseDataset, t_pred: np.ndarray, q_pred: np.ndarray) -> dict[str, float]:
    """Median and mean translation (m) and rotation (deg) errors of one pose per frame."""
    t_gt, q_gt = dataset.frame_list.translations(), dataset.frame_list.quaternions()
    t_err = pose.translation_error(t_gt, t_pred)
    r_err = pose.rotation_error_deg(q_gt, q_pred)
    return {
        "median_translation_m": float(np.median(t_err)),
        "median_rotation_deg": float(np.median(r_err)),
        "mean_translation_m": float(np.mean(t_err)),
        "mean_rotation_deg": float(np.mean(r_err)),
    }
