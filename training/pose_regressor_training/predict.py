"""Inference over a dataset with a trained model: device choice, poses per frame, median errors.

Used by `fit` (validation), `eval` and `export`; nothing here trains.
"""

from __future__ import annotations

import numpy as np
import torch

from pose_regressor import pose
from pose_regressor_training.data.dataset import PoseDataset
from pose_regressor_training.errors import TrainingError
from pose_regressor_training.models import PoseRegressor
from pose_regressor_training.models.model import images_to_unit_float


def resolve_device(name: str) -> torch.device:
    """`auto`, `cpu` or `cuda` as a torch device; asking for a GPU that is not there is an error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("device: cuda was asked for but no CUDA GPU is available")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


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
    t, q, _ = predict_outputs(model, dataset, device, batch_size, mc_samples, seed)
    return t, q


@torch.no_grad()
def predict_outputs(
    model: PoseRegressor,
    dataset: PoseDataset,
    device: torch.device,
    batch_size: int = 64,
    mc_samples: int = 0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """`predict` plus the variance head's log-variances (N, S, 6) of the same masks (None without one)."""
    model.eval()
    # masks drawn on the CPU: the same seed gives the same MC samples on any device
    generator = torch.Generator(device="cpu").manual_seed(seed)
    ts, qs, log_variances = [], [], []
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
        if out.log_variance is not None:
            log_variances.append(out.log_variance.double().cpu().numpy())
    return np.concatenate(ts), np.concatenate(qs), np.concatenate(log_variances) if log_variances else None


def median_errors(dataset: PoseDataset, t_pred: np.ndarray, q_pred: np.ndarray) -> dict[str, float]:
    """Median and mean translation (m) and rotation (deg) errors of one pose per frame."""
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
