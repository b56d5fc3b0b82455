"""The variance head's training signal: negative log-likelihood of the pose residual per axis.

The residual is the 6-vector (x, y, z, rot-x, rot-y, rot-z) from the prediction to the truth in
the map-frame tangent space, R_true = Exp(r) R_pred (`pose_regressor.uncertainty.tangent_residual`,
in torch). The caller detaches the prediction, so the NLL trains only the log-variance and never
trades pose accuracy for a smaller residual (Kendall & Gal 2017, with the pose loss kept as is).
"""

from __future__ import annotations

import math

import roma
import torch
from torch import Tensor

from pose_regressor_training.losses.geometry import normalize_quaternion

VARIANCE_NLLS = ("gaussian", "laplace")


def tangent_residual(t_true: Tensor, q_true: Tensor, t_pred: Tensor, q_pred: Tensor) -> Tensor:
    """[..., 6]: t_true - t_pred and rotvec(q_true q_pred^-1) (radians, shortest arc), xyzw quaternions."""
    q_rel = roma.quat_product(
        normalize_quaternion(q_true), roma.quat_conjugation(normalize_quaternion(q_pred))
    )
    # q and -q are one rotation: the w >= 0 representative gives the shortest arc (angle <= pi)
    q_rel = torch.where(q_rel[..., 3:4] < 0, -q_rel, q_rel)
    rotvec: Tensor = roma.unitquat_to_rotvec(q_rel)
    return torch.cat([t_true - t_pred, rotvec], dim=-1)


def variance_nll(residual: Tensor, log_variance: Tensor, kind: str = "gaussian") -> Tensor:
    """Mean over elements of the summed per-axis NLL of `residual` [..., 6] under a zero-mean
    distribution of variance exp(`log_variance`) [..., 6]: `gaussian`, or `laplace` (scale b with
    2 b^2 = variance). Constants included, so the values are true NLLs (nats)."""
    if kind == "gaussian":
        per_axis = 0.5 * (math.log(2 * math.pi) + log_variance + residual.square() * torch.exp(-log_variance))
    elif kind == "laplace":
        # b = sqrt(var / 2): log(2 b) = log 2 + 0.5 s - 0.5 log 2; |r| / b = sqrt(2) |r| exp(-s / 2)
        per_axis = (
            0.5 * math.log(2.0)
            + 0.5 * log_variance
            + math.sqrt(2.0) * residual.abs() * torch.exp(-0.5 * log_variance)
        )
    else:
        raise ValueError(f"variance_nll must be one of {', '.join(VARIANCE_NLLS)}, got {kind!r}")
    return per_axis.sum(dim=-1).mean()
