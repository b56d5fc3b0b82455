"""Siamese loss on pairs with a metric-learning term on the image embeddings (``siamese_metric``).

Poses are ``T_map_base`` (metres, xyzw); embeddings ``[B, K, E]`` come with the predictions.
"""

from __future__ import annotations

from dataclasses import dataclass

import roma
import torch
from torch import Tensor

from pose_regressor_training.losses.base import (
    PoseBatch,
    PoseLoss,
    absolute_errors,
    check_non_negative,
    check_norm,
    check_rotation,
    learned_scalar,
    output,
    relative_errors,
    uncertainty_weighted,
)
from pose_regressor_training.losses.geometry import Norm, Rotation, normalize_quaternion


@dataclass(frozen=True)
class SiameseMetricParams:
    """``lam``: λ, embedding units per metre of pose distance; ``beta_r``: metres per radian in the pose
    distance; ``metric_weight``: weight of the metric term; ``eps``: guards the adaptive weight's division;
    ``norm``/``rotation``: of the absolute and relative pose terms; ``s_*_init``: initial log-variances;
    ``learn_weights``: false keeps ``s_*`` at their initial values (fixed weights ``e^(-s_*_init)``);
    ``learn_embedding_scale``: the embedding distance is multiplied by a learned ``e^a`` (``a`` starts
    at ``log_embedding_scale_init``), so that the metric term can be met by ``a`` instead of by
    shrinking the embedding the pose head reads (which it does on our synthetic scene, see
    docs/results.md)."""

    lam: float = 1.0
    beta_r: float = 1.0
    metric_weight: float = 1.0
    eps: float = 1e-6
    norm: Norm = "l1"
    rotation: Rotation = "quat"
    s_t_init: float = 0.0
    s_q_init: float = -3.0
    s_t_rel_init: float = 0.0
    s_q_rel_init: float = -3.0
    learn_weights: bool = True
    learn_embedding_scale: bool = False
    log_embedding_scale_init: float = 0.0

    def __post_init__(self) -> None:
        check_non_negative(
            "siamese_metric", lam=self.lam, beta_r=self.beta_r, metric_weight=self.metric_weight, eps=self.eps
        )
        # strictly positive: it divides by λ·d + eps, and λ·d is 0 for a pair with identical poses
        if self.eps <= 0:
            raise ValueError(f"siamese_metric loss: eps must be > 0, got {self.eps}")
        check_norm("siamese_metric", self.norm)
        check_rotation("siamese_metric", self.rotation)


class SiameseMetricLoss(PoseLoss):
    """**Our formulation** of "Relative Geometry-Aware Siamese Neural Network for 6DOF Camera
    Relocalization" (Ding et al., 2019) for pairs (``K = 2``; with ``K > 2``, consecutive pairs):

    * absolute terms on both frames in the homoscedastic form ``L_t·e^(-s_t) + s_t + L_q·e^(-s_q) + s_q``;
    * the same form on the relative pose ``T_i^-1 T_j`` (predicted vs. true) with ``s_t_rel``, ``s_q_rel``;
    * a metric term making the embedding distance ``δ_f = ‖f_i - f_j‖₂`` track the true pose distance
      ``d = ‖t_i - t_j‖₂ + β_r·∠(q_i, q_j)`` (geodesic angle, rad): the mean over pairs of
      ``w·(δ_f - λ·d)²`` (``δ_f`` times ``e^a`` with ``learn_embedding_scale``) with the adaptive
      weight ``w = 1 + relu(λ·d - δ_f) / (λ·d + eps)``. ``w`` rises towards 2 for pairs that look
      alike but lie far apart (embeddings closer than their pose distance asks for) and is 1
      otherwise: a soft margin that scales with the pose distance. For ``δ_f < λ·d`` the term is
      ``(δ_f - λd)² + (λd - δ_f)³/(λd + eps)``, a cubic hinge; it is C¹ at ``δ_f = λ·d``.

    ``total = absolute + relative + metric_weight · metric``. Needs ``pred.embedding``. The four ``s_*``
    are ``nn.Parameter`` of this module. Parts: ``"t"``, ``"q"``, ``"t_rel"``, ``"q_rel"``, ``"metric"``,
    ``"s_t"``, ``"s_q"``, ``"s_t_rel"``, ``"s_q_rel"``, ``"embedding_log_scale"`` (``a``).
    """

    name = "siamese_metric"
    params_type = SiameseMetricParams
    params: SiameseMetricParams

    def __init__(self, params: SiameseMetricParams | None = None) -> None:
        super().__init__(params or SiameseMetricParams())
        p, learn = self.params, self.params.learn_weights
        self.s_t = learned_scalar(p.s_t_init, learn)
        self.s_q = learned_scalar(p.s_q_init, learn)
        self.s_t_rel = learned_scalar(p.s_t_rel_init, learn)
        self.s_q_rel = learned_scalar(p.s_q_rel_init, learn)
        self.log_embedding_scale = learned_scalar(p.log_embedding_scale_init, p.learn_embedding_scale)

    @classmethod
    def tuple_length(cls, params: SiameseMetricParams) -> int:
        return 2

    def forward(self, pred: PoseBatch, target: PoseBatch) -> dict[str, Tensor]:
        self.check_pair(pred, target, min_k=2)
        if pred.embedding is None:
            raise ValueError(
                "siamese_metric loss needs the predicted embeddings (PoseBatch.embedding [B, K, E])"
            )
        p = self.params
        l_t, l_q = absolute_errors(pred, target, p.norm, p.rotation)
        l_t_rel, l_q_rel = relative_errors(pred, target, p.norm, p.rotation)
        metric = self._metric(pred.embedding, target)
        total = (
            uncertainty_weighted(l_t, self.s_t)
            + uncertainty_weighted(l_q, self.s_q)
            + uncertainty_weighted(l_t_rel, self.s_t_rel)
            + uncertainty_weighted(l_q_rel, self.s_q_rel)
            + p.metric_weight * metric
        )
        return output(
            total,
            t=l_t,
            q=l_q,
            t_rel=l_t_rel,
            q_rel=l_q_rel,
            metric=metric,
            s_t=self.s_t,
            s_q=self.s_q,
            s_t_rel=self.s_t_rel,
            s_q_rel=self.s_q_rel,
            embedding_log_scale=self.log_embedding_scale,
        )

    def _metric(self, embedding: Tensor, target: PoseBatch) -> Tensor:
        """Mean adaptive-weighted ``(δ_f - λ·d)²`` over consecutive pairs."""
        p = self.params
        # the geodesic distance below assumes unit quaternions
        q = normalize_quaternion(target.q)
        angle: Tensor = roma.unitquat_geodesic_distance(q[:, :-1], q[:, 1:])
        translation: Tensor = torch.linalg.vector_norm(target.t[:, 1:] - target.t[:, :-1], dim=-1)
        scaled = p.lam * (translation + p.beta_r * angle)
        feature_distance: Tensor = self.log_embedding_scale.exp() * torch.linalg.vector_norm(
            embedding[:, 1:] - embedding[:, :-1], dim=-1
        )
        # not detached: the gradient is that of the cubic hinge in the class docstring
        weight = 1.0 + torch.relu(scaled - feature_distance) / (scaled + p.eps)
        return (weight * (feature_distance - scaled) ** 2).mean()
