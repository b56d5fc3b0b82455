"""What training minimizes: the pose loss of the model's predictions, plus the variance head's
negative log-likelihood and VLocNet's auxiliary odometry."""

from __future__ import annotations

import torch
from torch import nn

from pose_regressor_training.losses import PoseBatch, PoseLoss
from pose_regressor_training.losses.geometry import consecutive_relative_poses
from pose_regressor_training.losses.variance import tangent_residual, variance_nll
from pose_regressor_training.models import PoseRegressor
from pose_regressor_training.models.model import PoseOutput


class Objective(nn.Module):
    """Model and loss in one module, so that DistributedDataParallel syncs the loss's learned weights too."""

    def __init__(self, model: PoseRegressor, loss: PoseLoss) -> None:
        super().__init__()
        self.model = model
        self.loss = loss

    def forward(
        self, images: torch.Tensor, masks: torch.Tensor, t: torch.Tensor, q: torch.Tensor, step: int = 0
    ) -> dict[str, torch.Tensor]:
        """Loss parts of B tuples of K camera sets (t: B x K x 3, q: B x K x 4); "total" is minimized."""
        b, k = t.shape[:2]
        out = self.model(images, masks)
        # one row per head (model.heads); the loss is their mean
        rows = [self._row_parts(out, row, t, q) for row in range(out.t.shape[1])]
        parts = rows[0]
        if len(rows) > 1:
            parts = {key: torch.stack([row[key] for row in rows]).mean() for key in parts}
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

    def _row_parts(
        self, out: PoseOutput, row: int, t: torch.Tensor, q: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """The pose loss (and the variance head's NLL) of output row `row` (a head's, or the one row)."""
        b, k = t.shape[:2]
        pred = PoseBatch(
            t=out.t[:, row].reshape(b, k, 3),
            q=out.q[:, row].reshape(b, k, 4),
            embedding=out.embedding.reshape(b, k, -1),
        )
        parts = self.loss(pred, PoseBatch(t=t, q=q))
        if self.model.config.variance_head and out.log_variance is not None:
            # the detached residual: the NLL shapes the variance only, whatever pose loss is configured
            residual = tangent_residual(t, q, pred.t.detach(), pred.q.detach())
            nll = variance_nll(
                residual, out.log_variance[:, row].reshape(b, k, 6), self.model.config.variance_nll
            )
            parts = {**parts, "total": parts["total"] + nll, "variance_nll": nll.detach()}
        return dict(parts)
