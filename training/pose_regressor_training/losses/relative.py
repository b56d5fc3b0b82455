"""Losses on tuples of consecutive frames (``K >= 2``): ``relative`` (MapNet) and ``geometric_consistency``
(VLocNet).

Poses are ``T_map_base``; translations in metres, quaternions xyzw. Tuples are ``[B, K]`` with frame
``k`` earlier in time than frame ``k + 1``; terms on consecutive pairs average over all ``B·(K-1)`` pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import roma
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
from pose_regressor_training.losses.geometry import (
    Norm,
    Rotation,
    normalize_quaternion,
    quaternion_distance,
    vector_distance,
)


@dataclass(frozen=True)
class RelativeParams:
    """``tuple_length``: frames per tuple k (>= 2; the gap between members is the data config's
    ``tuple_skip``); ``norm``: ``"l1"`` (MapNet) or ``"l2"``; ``rotation``: ``"logq"``
    (MapNet's log-quaternion) or ``"quat"``, for both absolute and relative terms; ``s_*_init``: initial
    log-variances of the four learned weights; ``learn_weights``: false keeps them at their initial
    values, i.e. fixed weights ``e^(-s_*_init)`` (the relative-term weight is ``e^(-s_t_rel_init)``)."""

    tuple_length: int = 3
    norm: Norm = "l1"
    rotation: Rotation = "logq"
    s_t_init: float = 0.0
    s_q_init: float = -3.0
    s_t_rel_init: float = 0.0
    s_q_rel_init: float = -3.0
    learn_weights: bool = True

    def __post_init__(self) -> None:
        if self.tuple_length < 2:
            raise ValueError(f"relative loss: tuple_length must be >= 2, got {self.tuple_length}")
        check_norm("relative", self.norm)
        check_rotation("relative", self.rotation)


class RelativeLoss(PoseLoss):
    """MapNet (Brahmbhatt et al., CVPR 2018, "Geometry-Aware Learning of Maps for Camera Localization"):

    ``L_t·e^(-s_t) + s_t + L_q·e^(-s_q) + s_q`` on the absolute poses of all K frames, plus
    ``L_t,rel·e^(-s_t_rel) + s_t_rel + L_q,rel·e^(-s_q_rel) + s_q_rel`` on the relative poses
    ``T_i^-1 T_{i+1}`` of consecutive frames, computed the same way for prediction and ground truth
    (``t_rel = R_i^T (t_{i+1} - t_i)`` in frame i, ``q_rel = q_i^* ⊗ q_{i+1}``). Rotations are compared as
    log-quaternions ``‖log q - log q̂‖`` by default, as in MapNet (``rotation: "quat"`` switches to the
    hemisphere-aligned quaternion distance). The four ``s_*`` are ``nn.Parameter`` of this module.

    Accepts any ``K >= 2`` (``tuple_length`` is what the data pipeline is asked for). Parts: ``"t"``,
    ``"q"``, ``"t_rel"``, ``"q_rel"``, ``"s_t"``, ``"s_q"``, ``"s_t_rel"``, ``"s_q_rel"``.
    """

    name = "relative"
    params_type = RelativeParams
    params: RelativeParams

    def __init__(self, params: RelativeParams | None = None) -> None:
        super().__init__(params or RelativeParams())
        p, learn = self.params, self.params.learn_weights
        self.s_t = learned_scalar(p.s_t_init, learn)
        self.s_q = learned_scalar(p.s_q_init, learn)
        self.s_t_rel = learned_scalar(p.s_t_rel_init, learn)
        self.s_q_rel = learned_scalar(p.s_q_rel_init, learn)

    @classmethod
    def tuple_length(cls, params: RelativeParams) -> int:
        return params.tuple_length

    def forward(self, pred: PoseBatch, target: PoseBatch) -> dict[str, Tensor]:
        self.check_pair(pred, target, min_k=2)
        norm, rotation = self.params.norm, self.params.rotation
        l_t, l_q = absolute_errors(pred, target, norm, rotation)
        l_t_rel, l_q_rel = relative_errors(pred, target, norm, rotation)
        total = (
            uncertainty_weighted(l_t, self.s_t)
            + uncertainty_weighted(l_q, self.s_q)
            + uncertainty_weighted(l_t_rel, self.s_t_rel)
            + uncertainty_weighted(l_q_rel, self.s_q_rel)
        )
        return output(
            total,
            t=l_t,
            q=l_q,
            t_rel=l_t_rel,
            q_rel=l_q_rel,
            s_t=self.s_t,
            s_q=self.s_q,
            s_t_rel=self.s_t_rel,
            s_q_rel=self.s_q_rel,
        )


@dataclass(frozen=True)
class GeometricConsistencyParams:
    """``norm``: ``"l2"`` (VLocNet's Euclidean norm) or ``"l1"``; ``s_*_init``: initial log-variances;
    ``odom_weight``: weight of the odometry terms against the absolute ones (1 in the paper);
    ``learn_weights``: false keeps ``s_*`` at their initial values (fixed weights ``e^(-s_*_init)``)."""

    norm: Norm = "l2"
    s_t_init: float = 0.0
    s_q_init: float = -3.0
    odom_weight: float = 1.0
    learn_weights: bool = True

    def __post_init__(self) -> None:
        check_norm("geometric_consistency", self.norm)
        check_non_negative("geometric_consistency", odom_weight=self.odom_weight)


class GeometricConsistencyLoss(PoseLoss):
    """Geometric consistency loss of VLocNet (Valada, Radwan & Burgard, ICRA 2018, "Deep Auxiliary Learning
    for Visual Localization and Odometry"):

    ``(L_t + w·L_t,odom)·e^(-s_t) + s_t + (L_q + w·L_q,odom)·e^(-s_q) + s_q`` (``w``: ``odom_weight``)

    ``L_t``, ``L_q``: absolute errors averaged over all K frames (quaternion distance with hemisphere
    alignment). The odometry terms compare the true motion between consecutive frames,
    ``t_k - t_{k-1}`` (map frame, as in the paper) and ``q_{k-1}^-1 ⊗ q_k``, with the motion between the
    two *predicted* poses, ``t̂_k - t̂_{k-1}`` and ``q̂_{k-1}^-1 ⊗ q̂_k``: a prediction off by a common offset
    on both frames pays only the absolute terms. ``s_t``, ``s_q`` are ``nn.Parameter`` of this module.

    Needs ``K >= 2`` (the data pipeline is asked for pairs); with ``K > 2`` every consecutive pair counts.
    Parts: ``"t"``, ``"q"``, ``"t_odom"``, ``"q_odom"``, ``"s_t"``, ``"s_q"``.
    """

    name = "geometric_consistency"
    params_type = GeometricConsistencyParams
    params: GeometricConsistencyParams

    def __init__(self, params: GeometricConsistencyParams | None = None) -> None:
        super().__init__(params or GeometricConsistencyParams())
        self.s_t = learned_scalar(self.params.s_t_init, self.params.learn_weights)
        self.s_q = learned_scalar(self.params.s_q_init, self.params.learn_weights)

    @classmethod
    def tuple_length(cls, params: GeometricConsistencyParams) -> int:
        return 2

    def forward(self, pred: PoseBatch, target: PoseBatch) -> dict[str, Tensor]:
        self.check_pair(pred, target, min_k=2)
        norm = self.params.norm
        l_t, l_q = absolute_errors(pred, target, norm)
        l_t_odom = vector_distance(
            pred.t[:, 1:] - pred.t[:, :-1], target.t[:, 1:] - target.t[:, :-1], norm
        ).mean()
        l_q_odom = quaternion_distance(_motion_rotation(pred.q), _motion_rotation(target.q), norm).mean()
        w = self.params.odom_weight
        total = uncertainty_weighted(l_t + w * l_t_odom, self.s_t) + uncertainty_weighted(
            l_q + w * l_q_odom, self.s_q
        )
        return output(total, t=l_t, q=l_q, t_odom=l_t_odom, q_odom=l_q_odom, s_t=self.s_t, s_q=self.s_q)


def _motion_rotation(q: Tensor) -> Tensor:
    """``q_{k-1}^-1 ⊗ q_k`` of consecutive frames of ``[B, K, 4]`` (normalized first) → ``[B, K-1, 4]``."""
    q = normalize_quaternion(q)
    rel: Tensor = roma.quat_product(roma.quat_conjugation(q[:, :-1]), q[:, 1:])
    return rel
