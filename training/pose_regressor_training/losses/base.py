"""What every loss shares: the batch type, the reference camera, the loss base class and error terms.

Conventions: a pose is ``T_map_base`` (maps ``base_link`` points into ``map``; base_link is REP-103,
x forward, y left, z up); translations in metres, quaternions **xyzw**, rotations in radians.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from pose_regressor_training.losses.geometry import (
    NORMS,
    ROTATIONS,
    Norm,
    Rotation,
    consecutive_relative_poses,
    rotation_distance,
    vector_distance,
)


@dataclass
class PoseBatch:
    """Poses of a batch of tuples: ``B`` samples of ``K`` frames each (``K = 1`` for plain samples).

    ``t``: ``[B, K, 3]`` metres, ``T_map_base`` translation. ``q``: ``[B, K, 4]`` xyzw; predictions are
    unit norm with ``w >= 0`` by construction, and the losses normalize them again where their formula
    reads ``q̂/‖q̂‖``. ``embedding``: ``[B, K, E]`` image embeddings, predictions only (``siamese_metric``).
    """

    t: Tensor
    q: Tensor
    embedding: Tensor | None = None

    def __post_init__(self) -> None:
        if self.t.ndim != 3 or self.t.shape[-1] != 3:
            raise ValueError(f"PoseBatch.t must have shape [B, K, 3], got {list(self.t.shape)}")
        if self.q.shape != (*self.t.shape[:2], 4):
            raise ValueError(
                f"PoseBatch.q must have shape [B, K, 4] = {[*self.t.shape[:2], 4]}, got {list(self.q.shape)}"
            )
        if self.embedding is not None and (
            self.embedding.ndim != 3 or self.embedding.shape[:2] != self.t.shape[:2]
        ):
            raise ValueError(
                f"PoseBatch.embedding must have shape [B, K, E] with [B, K] = {list(self.t.shape[:2])}, "
                f"got {list(self.embedding.shape)}"
            )

    @property
    def batch_size(self) -> int:
        return int(self.t.shape[0])

    @property
    def tuple_length(self) -> int:
        """``K``, the number of frames per tuple."""
        return int(self.t.shape[1])


@dataclass(frozen=True)
class CameraSpec:
    """The reference camera for the reprojection loss: pinhole intrinsics (pixels) and ``T_base_cam``.

    ``T_base_cam`` maps points of the camera's optical frame (z forward, x right, y down) into base_link.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    t_base_cam: tuple[float, float, float]
    q_base_cam_xyzw: tuple[float, float, float, float]

    def __post_init__(self) -> None:
        if not (self.fx > 0 and self.fy > 0):
            raise ValueError(f"CameraSpec: fx and fy must be > 0, got fx={self.fx}, fy={self.fy}")
        if not (self.width > 0 and self.height > 0):
            raise ValueError(f"CameraSpec: width and height must be > 0, got {self.width}x{self.height}")
        if len(self.t_base_cam) != 3 or len(self.q_base_cam_xyzw) != 4:
            raise ValueError("CameraSpec: t_base_cam needs 3 values and q_base_cam_xyzw 4 (xyzw)")
        norm = math.sqrt(sum(c * c for c in self.q_base_cam_xyzw))
        if not math.isfinite(norm) or abs(norm - 1.0) > 1e-3:
            raise ValueError(f"CameraSpec: q_base_cam_xyzw must be a unit quaternion, got norm {norm:.6g}")

    @property
    def diagonal_px(self) -> float:
        """Image diagonal in pixels."""
        return math.hypot(self.width, self.height)


class PoseLoss(nn.Module):
    """Base of every loss: ``forward(pred, target)`` returns scalar tensors, ``"total"`` plus named parts.

    ``"total"`` is what is back-propagated; the other entries are detached, for logging. Subclasses set
    ``name`` (their registry key) and ``params_type`` (their frozen parameter dataclass) and keep the
    parameters as ``self.params``. Learned weights (``s_*``) are ``nn.Parameter`` of the module, so they
    appear in ``loss.parameters()`` and must be handed to the optimizer.
    """

    name: ClassVar[str] = ""
    params_type: ClassVar[type[Any]]

    params: Any  # subclasses narrow it to their parameter dataclass

    def __init__(self, params: Any) -> None:
        super().__init__()
        self.params = params

    @classmethod
    def from_params(cls, params: Any, camera: CameraSpec | None = None) -> PoseLoss:
        """Construct from a parameter dataclass; ``camera`` is ignored unless the loss needs one."""
        return cls(params)

    @classmethod
    def tuple_length(cls, params: Any) -> int:
        """Frames ``K`` each sample must carry for this loss with these parameters."""
        return 1

    def __call__(self, pred: PoseBatch, target: PoseBatch, **kwargs: Any) -> dict[str, Tensor]:
        # override only to type the result: nn.Module.__call__ returns Any
        out: dict[str, Tensor] = super().__call__(pred, target, **kwargs)
        return out

    @abstractmethod
    def forward(self, pred: PoseBatch, target: PoseBatch) -> dict[str, Tensor]:
        """The loss and its parts for predictions and targets of the same shape."""

    # ----------------------------------------------------------------------------- shared checks

    def check_pair(self, pred: PoseBatch, target: PoseBatch, min_k: int = 1) -> None:
        """Raise ``ValueError`` unless ``pred`` and ``target`` match in ``[B, K]`` and ``K >= min_k``."""
        if pred.t.shape != target.t.shape:
            raise ValueError(
                f"{self.name} loss: prediction {list(pred.t.shape)} and target {list(target.t.shape)} "
                "translations differ in shape"
            )
        if pred.tuple_length < min_k:
            raise ValueError(
                f"{self.name} loss needs tuples of K >= {min_k} frames per sample, "
                f"got K={pred.tuple_length}: make the data pipeline build tuples of "
                "required_tuple_length() frames"
            )


def output(total: Tensor, **parts: Tensor) -> dict[str, Tensor]:
    """A loss result: ``total`` as is, the other parts detached."""
    # detached so that logging the parts never keeps their graphs alive
    return {"total": total, **{key: value.detach() for key, value in parts.items()}}


def uncertainty_weighted(loss: Tensor, s: Tensor) -> Tensor:
    """Kendall & Cipolla (2017) homoscedastic weighting ``L·exp(-s) + s``, ``s`` a learned log-variance."""
    return loss * torch.exp(-s) + s


def learned_scalar(init: float, learn: bool = True) -> nn.Parameter:
    """A learned scalar weight (float32; ``loss.to(...)`` / ``.double()`` move it with the module).

    ``learn=False`` keeps it at ``init`` (a fixed weight): the optimizer is given only parameters
    that require gradients, and the checkpoint keeps the same keys either way.
    """
    return nn.Parameter(torch.tensor(float(init)), requires_grad=learn)


def absolute_errors(
    pred: PoseBatch, target: PoseBatch, norm: Norm, rotation: Rotation = "quat"
) -> tuple[Tensor, Tensor]:
    """Mean translation error (m) and mean rotation error over all ``B·K`` frames."""
    l_t = vector_distance(pred.t, target.t, norm).mean()
    l_q = rotation_distance(pred.q, target.q, rotation, norm).mean()
    return l_t, l_q


def relative_errors(
    pred: PoseBatch, target: PoseBatch, norm: Norm, rotation: Rotation = "quat"
) -> tuple[Tensor, Tensor]:
    """Mean error of the relative poses ``T_i^-1 T_{i+1}`` of consecutive frames, predicted vs. true.

    Translation in metres (expressed in frame ``i``), averaged over all ``B·(K-1)`` pairs.
    """
    t_rel_hat, q_rel_hat = consecutive_relative_poses(pred.t, pred.q)
    t_rel, q_rel = consecutive_relative_poses(target.t, target.q)
    l_t = vector_distance(t_rel_hat, t_rel, norm).mean()
    l_q = rotation_distance(q_rel_hat, q_rel, rotation, norm).mean()
    return l_t, l_q


def check_choice(loss: str, key: str, value: str, choices: tuple[str, ...]) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{loss} loss: {key} must be one of {list(choices)}, got {value!r}")


def check_norm(loss: str, norm: str) -> None:
    check_choice(loss, "norm", norm, NORMS)


def check_rotation(loss: str, rotation: str) -> None:
    check_choice(loss, "rotation", rotation, ROTATIONS)


def check_non_negative(loss: str, **values: float) -> None:
    """Raise ``ValueError`` for any negative or non-finite value."""
    for key, value in values.items():
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{loss} loss: {key} must be a finite number >= 0, got {value}")
