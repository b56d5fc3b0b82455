"""A second variance head fitted on cross-fitted errors (`model.error_head`, `pose-train error-head`).

The variance head learns the log-variance from the model's own training residuals. A network fits
its training set far better than it predicts a new view (on the synthetic default, median 0.08 m on
training frames against 0.20 m for a model that never saw them), so those residuals say little about
where a new view goes wrong. Models of the same recipe that each leave out a fold of the training
trajectories give every training frame an error from a model that never saw it; a second head,
fitted on the trained model's frozen features against those errors (Gaussian or Laplace NLL, as the
variance head), learns where views are hard (in the manner of DEUP, Lahlou et al. 2023). Its
variance is added to the variance head's in the graph (`models.model.log_add_exp`).

What is here is plain torch on arrays and models; `error_head_command` runs the folds and I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from pose_regressor_training.losses.variance import tangent_residual, variance_nll
from pose_regressor_training.models import PoseRegressor
from pose_regressor_training.models.model import images_to_unit_float
from pose_regressor_training.predict import CameraSets


@dataclass(frozen=True)
class ErrorHeadFit:
    """How the head is fitted: AdamW on (frame, track shift) pairs, the NLL of the frame's
    cross-fitted residual. The defaults are those measured in docs/results.md (weight decay 0.1
    on standardized features: the head must not learn the few hundred largest errors by heart)."""

    epochs: int = 15
    lr: float = 1e-3
    weight_decay: float = 0.1
    batch_size: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0 or not self.weight_decay >= 0:
            raise ValueError("error head fit: epochs and batch_size >= 1, lr > 0 and weight_decay >= 0")


def check_supported(model: PoseRegressor) -> None:
    """ValueError naming what `pose-train error-head` cannot add an error head to."""
    c = model.config
    if not c.variance_head:
        raise ValueError(
            "the model has no variance head (model.variance_head): the error head adds to its log-variance"
        )
    if c.heads != 1:
        raise ValueError(f"the model has {c.heads} heads (model.heads); the error head supports one")
    if c.embedding_dropout:
        raise ValueError("the model drops its embedding (model.embedding_dropout); the error head does not")


@torch.no_grad()
def head_features(
    model: PoseRegressor, sets: CameraSets, device: torch.device, batch_size: int = 64
) -> np.ndarray:
    """The variance head's input without dropout, float32 [N, K, D]: the hidden layer of each of the
    K track shifts that inference averages over (K = 1 without `track_tta`)."""
    model.eval()
    rows = []
    for start in range(0, len(sets), batch_size):
        idx = range(start, min(start + batch_size, len(sets)))
        images = images_to_unit_float(torch.stack([torch.from_numpy(sets.images(i)) for i in idx])).to(device)
        b, cameras = images.shape[:2]
        if model.config.track_tta:
            shifted = images[:, model.shift_index].reshape(b * cameras, *images.shape[1:])
            embedding = model.embed(shifted).reshape(b, cameras, -1)
        else:
            embedding = model.embed(images)[:, None]
        rows.append(model.hidden(embedding).float().cpu().numpy())
    if not rows:
        return np.zeros((0, 1, model.config.hidden_dim), np.float32)
    return np.concatenate(rows)


def residuals(t_true: np.ndarray, q_true: np.ndarray, t_pred: np.ndarray, q_pred: np.ndarray) -> np.ndarray:
    """[N, 6] residuals (x, y, z in the dataset's length unit, rotation vector in rad) from the
    predictions to the truth, in the variance head's convention (R_true = Exp(r) R_pred)."""
    r = tangent_residual(*(torch.as_tensor(a, dtype=torch.float64) for a in (t_true, q_true, t_pred, q_pred)))
    return r.numpy()


def fit_error_head(
    model: PoseRegressor,
    features: np.ndarray,
    residual: np.ndarray,
    fit: ErrorHeadFit,
    progress: bool = False,
) -> nn.Module:
    """A head of the model's `error_head_hidden` form fitted on `features` [N, K, D] (`head_features`)
    against `residual` [N, 6] (`residuals`, the frames' cross-fitted errors), ready for
    `model.fc_error_log_variance`: it reads the hidden layer as the model does (standardization
    folded into its first layer) and outputs the log-variance in the variance head's units
    (translation normalized by the model's t_std)."""
    if features.ndim != 3 or len(features) != len(residual) or residual.shape[1:] != (6,):
        raise ValueError(
            f"features [N, K, D] and residual [N, 6] expected, got {features.shape}, {residual.shape}"
        )
    if len(features) < 2:
        raise ValueError("the error head needs at least two frames with cross-fitted errors")
    config = model.config
    generator = torch.Generator().manual_seed(fit.seed)
    torch.manual_seed(fit.seed)
    head = _new_head(config.hidden_dim, config.error_head_hidden)
    n, shifts, dim = features.shape
    x = torch.from_numpy(features.reshape(n * shifts, dim).astype(np.float32))
    # the variance head's units: translation over t_std (so that one head serves any scale)
    scale = torch.cat([model.t_std.detach().cpu().double(), torch.ones(3, dtype=torch.float64)])
    target = torch.from_numpy(residual).double() / scale
    target = target.repeat_interleave(shifts, dim=0).float()
    mean, std = x.mean(0), x.std(0) + 1e-6
    x = (x - mean) / std
    with torch.no_grad():
        last = _linears(head)[-1]
        nn.init.zeros_(last.weight)
        last.bias.copy_(torch.log(target.square().mean(0) + 1e-12))
    optimizer = torch.optim.AdamW(head.parameters(), lr=fit.lr, weight_decay=fit.weight_decay)
    dropout = config.dropout if config.covariance == "dropout" else 0.0
    head.train()
    for epoch in range(fit.epochs):
        order = torch.randperm(len(x), generator=generator)
        total = 0.0
        for start in range(0, len(x), fit.batch_size):
            pick = order[start : start + fit.batch_size]
            inputs = x[pick]
            if dropout > 0:  # MC-dropout inference feeds the head masked units: train it on them
                keep = torch.rand(inputs.shape, generator=generator) >= dropout
                inputs = (inputs * std + mean) * keep / (1 - dropout)
                inputs = (inputs - mean) / std
            loss = variance_nll(target[pick], head(inputs), config.variance_nll)
            optimizer.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            total += loss.item() * len(pick)
        if progress:
            print(f"error-head: head epoch {epoch + 1}/{fit.epochs}: NLL {total / len(x):.4f}", flush=True)
    head.eval()
    _fold_standardization(head, mean, std)
    return head


def _new_head(hidden_dim: int, head_hidden: int) -> nn.Module:
    if head_hidden == 0:
        return nn.Linear(hidden_dim, 6)
    first = nn.Linear(hidden_dim, head_hidden)
    nn.init.kaiming_normal_(first.weight, nonlinearity="relu")
    nn.init.zeros_(first.bias)
    return nn.Sequential(first, nn.ReLU(), nn.Linear(head_hidden, 6))


def _linears(head: nn.Module) -> list[nn.Linear]:
    return [m for m in head.modules() if isinstance(m, nn.Linear)]


@torch.no_grad()
def _fold_standardization(head: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
    """W((x - mean) / std) + b = (W / std) x + (b - (W / std) mean): the head then reads raw features."""
    first = _linears(head)[0]
    weight = first.weight / std[None, :]
    first.bias.sub_(weight @ mean)
    first.weight.copy_(weight)


def with_error_head(model: PoseRegressor, head: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict of `model` (with `error_head` configured) holding `head` as its error head."""
    if model.fc_error_log_variance is None:
        raise ValueError("the model is not configured with error_head")
    model.fc_error_log_variance.load_state_dict(head.state_dict())
    return model.state_dict()
