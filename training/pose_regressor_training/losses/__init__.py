"""Pose-regression losses of the APR literature behind one registry, chosen by name in the config.

Each loss is a ``torch.nn.Module``: ``loss(pred, target)`` with two :class:`PoseBatch` (``T_map_base``,
metres, xyzw, ``[B, K, ·]``) returns scalar tensors, ``"total"`` (back-propagate this) plus named parts
(detached). Losses with learned weights (``homoscedastic``, ``relative``, ``geometric_consistency``,
``siamese_metric``) hold them as ``nn.Parameter``: put ``loss.parameters()`` into the optimizer.
"""

from pose_regressor_training.losses.base import CameraSpec, PoseBatch, PoseLoss
from pose_regressor_training.losses.registry import LOSSES, build_loss, required_tuple_length

__all__ = ["LOSSES", "CameraSpec", "PoseBatch", "PoseLoss", "build_loss", "required_tuple_length"]
