"""Single-frame (absolute) pose losses: ``posenet``, ``homoscedastic``, ``coupled``.

Poses are ``T_map_base``; translations in metres, quaternions xyzw. All three average over every frame
of the ``[B, K]`` batch, so they also work on tuples (``K > 1``), though they need only ``K = 1``.
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
    learned_scalar,
    output,
    uncertainty_weighted,
)
from pose_regressor_training.losses.geometry import (
    Norm,
    normalize_quaternion,
    quaternion_distance,
    vector_distance,
)


@dataclass(frozen=True)
class PoseNetParams:
    """``beta``: weight of the quaternion term (metres per unit quaternion distance).

    The paper tuned β per scene, 120-750 indoors and 250-2000 outdoors, for its scene scales; our
    default 1.0 is a neutral start for metre-scale scenes and rarely the best value: tune it, or use
    ``homoscedastic`` which learns the balance.
    """

    beta: float = 1.0

    def __post_init__(self) -> None:
        check_non_negative("posenet", beta=self.beta)


class PoseNetLoss(PoseLoss):
    """PoseNet (Kendall, Grimes & Cipolla, ICCV 2015): ``‖t - t̂‖₂ + β ‖q - q̂/‖q̂‖‖₂``, mean over B and K.

    The target ``q`` is compared in the hemisphere of the normalized prediction (``q`` and ``-q`` are the
    same rotation). Parts: ``"t"`` (m), ``"q"`` (quaternion distance).
    """

    name = "posenet"
    params_type = PoseNetParams
    params: PoseNetParams

    def __init__(self, params: PoseNetParams | None = None) -> None:
        super().__init__(params or PoseNetParams())

    def forward(self, pred: PoseBatch, target: PoseBatch) -> dict[str, Tensor]:
        self.check_pair(pred, target)
        l_t, l_q = absolute_errors(pred, target, "l2")
        return output(l_t + self.params.beta * l_q, t=l_t, q=l_q)


@dataclass(frozen=True)
class HomoscedasticParams:
    """``norm``: ``"l1"`` (the paper's best) or ``"l2"``, for both terms; ``s_*_init``: initial
    log-variances."""

    norm: Norm = "l1"
    s_t_init: float = 0.0
    # the paper's init: e^3 ≈ 20× start weight on the quaternion term, whose errors are numerically small
    s_q_init: float = -3.0

    def __post_init__(self) -> None:
        check_norm("homoscedastic", self.norm)


class HomoscedasticLoss(PoseLoss):
    """Learned homoscedastic uncertainty weighting (Kendall & Cipolla, CVPR 2017, "Geometric loss functions
    for camera pose regression with deep learning"):

    ``L_t·exp(-s_t) + s_t + L_q·exp(-s_q) + s_q``, ``L_t = mean ‖t - t̂‖``, ``L_q = mean ‖q - q̂/‖q̂‖‖``
    (hemisphere-aligned target), both with the configured norm. ``s_t`` (init 0) and ``s_q`` (init -3, the
    paper's values) are ``nn.Parameter`` of this module: give them to the optimizer. Parts: ``"t"``,
    ``"q"``, ``"s_t"``, ``"s_q"``.
    """

    name = "homoscedastic"
    params_type = HomoscedasticParams
    params: HomoscedasticParams

    def __init__(self, params: HomoscedasticParams | None = None) -> None:
        super().__init__(params or HomoscedasticParams())
        self.s_t = learned_scalar(self.params.s_t_init)
        self.s_q = learned_scalar(self.params.s_q_init)

    def forward(self, pred: PoseBatch, target: PoseBatch) -> dict[str, Tensor]:
        self.check_pair(pred, target)
        l_t, l_q = absolute_errors(pred, target, self.params.norm)
        total = uncertainty_weighted(l_t, self.s_t) + uncertainty_weighted(l_q, self.s_q)
        return output(total, t=l_t, q=l_q, s_t=self.s_t, s_q=self.s_q)


@dataclass(frozen=True)
class CoupledParams:
    """``beta``: quaternion weight; ``gamma``: weight of the coupling term; ``distance``: d (m) of the viewed
    point along ``axis`` (a direction in base_link, default base forward +x per REP-103; normalized);
    ``norm``: of the translation and quaternion terms (the coupling term is always Euclidean, metres);
    ``learn_weights``: weight the three terms by learned log-variances (``s_*_init``) as ``homoscedastic``
    does, instead of ``1``, ``beta`` and ``gamma``."""

    beta: float = 1.0
    gamma: float = 1.0
    distance: float = 3.0
    axis: tuple[float, float, float] = (1.0, 0.0, 0.0)
    norm: Norm = "l2"
    learn_weights: bool = False
    s_t_init: float = 0.0
    s_q_init: float = 0.0
    s_coupling_init: float = 0.0

    def __post_init__(self) -> None:
        check_non_negative("coupled", beta=self.beta, gamma=self.gamma, distance=self.distance)
        check_norm("coupled", self.norm)
        # a zero axis would divide by zero when view_offset is normalized below
        if len(self.axis) != 3 or sum(a * a for a in self.axis) < 1e-12:
            raise ValueError(f"coupled loss: axis must be a non-zero 3-vector in base_link, got {self.axis}")


class CoupledLoss(PoseLoss):
    """Position-orientation coupled loss, **our formulation** of the coupling term of Boittiaux et al.,
    "Improving Image-Based Localization with Deep Learning: The Impact of the Loss Function" (2019/2020):

    ``L_t + β·L_q + γ·mean ‖(t + R(q)·d·a) - (t̂ + R(q̂)·d·a)‖₂``

    i.e. besides the pose itself, the point ``d`` metres along the viewing axis ``a`` (base_link) is pushed
    to where the true pose looks, which ties rotation errors to their effect in metres. ``L_t`` and ``L_q``
    as in ``posenet`` (configurable norm). With ``learn_weights`` the total is
    ``L_t·e^(-s_t) + s_t + L_q·e^(-s_q) + s_q + L_c·e^(-s_c) + s_c`` (``s_*`` are ``nn.Parameter``).
    Parts: ``"t"``, ``"q"``, ``"coupling"`` (m), and ``"s_t"``, ``"s_q"``, ``"s_coupling"`` when learned.
    """

    name = "coupled"
    params_type = CoupledParams
    params: CoupledParams
    view_offset: Tensor  # [3] d·a in base_link (buffer)

    def __init__(self, params: CoupledParams | None = None) -> None:
        super().__init__(params or CoupledParams())
        axis = torch.tensor(self.params.axis, dtype=torch.float32)
        # not persistent: rebuilt from params, so checkpoints need not carry it
        self.register_buffer(
            "view_offset", self.params.distance * axis / torch.linalg.vector_norm(axis), persistent=False
        )
        if self.params.learn_weights:
            self.s_t = learned_scalar(self.params.s_t_init)
            self.s_q = learned_scalar(self.params.s_q_init)
            self.s_coupling = learned_scalar(self.params.s_coupling_init)

    def forward(self, pred: PoseBatch, target: PoseBatch) -> dict[str, Tensor]:
        self.check_pair(pred, target)
        offset = self.view_offset.to(pred.t.dtype)
        l_t = vector_distance(pred.t, target.t, self.params.norm).mean()
        l_q = quaternion_distance(pred.q, target.q, self.params.norm).mean()
        point_hat = pred.t + roma.quat_action(
            normalize_quaternion(pred.q), offset.expand_as(pred.t), is_normalized=True
        )
        point = target.t + roma.quat_action(
            normalize_quaternion(target.q), offset.expand_as(target.t), is_normalized=True
        )
        coupling = vector_distance(point_hat, point, "l2").mean()
        if self.params.learn_weights:
            total = (
                uncertainty_weighted(l_t, self.s_t)
                + uncertainty_weighted(l_q, self.s_q)
                + uncertainty_weighted(coupling, self.s_coupling)
            )
            weights = {"s_t": self.s_t, "s_q": self.s_q, "s_coupling": self.s_coupling}
            return output(total, t=l_t, q=l_q, coupling=coupling, **weights)
        total = l_t + self.params.beta * l_q + self.params.gamma * coupling
        return output(total, t=l_t, q=l_q, coupling=coupling)
