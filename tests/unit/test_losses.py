"""Tests of the loss registry (pose_regressor_training.losses).

Expected values are worked out by hand in each test (3-4-5 triangles, 90° rotations about z, pinhole
projections), not by calling the losses' own helpers. Conventions: poses are T_map_base, metres, xyzw.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pytest
import torch
from torch.func import functional_call

from pose_regressor_training.losses import (
    LOSSES,
    CameraSpec,
    PoseBatch,
    PoseLoss,
    build_loss,
    required_tuple_length,
)

S45 = math.sqrt(0.5)
IDENTITY = (0.0, 0.0, 0.0, 1.0)
YAW_90 = (0.0, 0.0, S45, S45)  # +90° about z (xyzw)
YAW_180 = (0.0, 0.0, 1.0, 0.0)
D90_L2 = math.sqrt(2.0 - math.sqrt(2.0))  # ‖YAW_90 - IDENTITY‖₂ = sqrt(0.5 + (1 - √½)²)
D90_L1 = 1.0  # ‖YAW_90 - IDENTITY‖₁ = √½ + (1 - √½)
E3 = math.exp(3.0)  # e^(-s_q) at the default init s_q = -3

# Optical frame of a camera looking along base +x: optical z -> base x, x -> -y, y -> -z.
Q_BASE_OPTICAL = (-0.5, 0.5, -0.5, 0.5)
CAMERA = CameraSpec(
    fx=100.0,
    fy=100.0,
    cx=50.0,
    cy=40.0,
    width=100,
    height=80,
    t_base_cam=(0.1, 0.0, 0.0),
    q_base_cam_xyzw=Q_BASE_OPTICAL,
)

Frames = Sequence[Sequence[Sequence[float]]]  # [B][K][3 or 4]


def poses(t: Frames, q: Frames, embedding: Frames | None = None) -> PoseBatch:
    def as64(x: Frames) -> torch.Tensor:
        return torch.tensor(x, dtype=torch.float64)

    return PoseBatch(as64(t), as64(q), None if embedding is None else as64(embedding))


def make(name: str, params: dict[str, Any] | None = None, camera: CameraSpec | None = None) -> PoseLoss:
    loss = build_loss(name, params, camera)
    loss.double()
    return loss


def value(out: dict[str, torch.Tensor], key: str = "total") -> float:
    return float(out[key].detach())


def random_target(b: int, k: int, seed: int = 0) -> PoseBatch:
    gen = torch.Generator().manual_seed(seed)
    q = torch.nn.functional.normalize(torch.randn(b, k, 4, generator=gen, dtype=torch.float64), dim=-1)
    q = torch.where(q[..., 3:] < 0, -q, q)
    return PoseBatch(torch.randn(b, k, 3, generator=gen, dtype=torch.float64), q)


# --------------------------------------------------------------------------- posenet


def test_posenet_value() -> None:
    loss = make("posenet", {"beta": 2.0})
    # Sample 0: t off by (3, 4, 0) -> 5 m, q a 90° yaw off (given un-normalized, x3); sample 1 exact.
    pred = poses([[[3.0, 4.0, 0.0]], [[1.0, 1.0, 1.0]]], [[[3 * c for c in YAW_90]], [IDENTITY]])
    target = poses([[[0.0, 0.0, 0.0]], [[1.0, 1.0, 1.0]]], [[IDENTITY], [IDENTITY]])
    out = loss(pred, target)
    assert value(out, "t") == pytest.approx(2.5)
    assert value(out, "q") == pytest.approx(D90_L2 / 2)
    assert value(out) == pytest.approx(2.5 + 2.0 * D90_L2 / 2)


def test_posenet_target_sign_invariance() -> None:
    loss = make("posenet", {"beta": 3.0})
    target = random_target(4, 1, seed=1)
    pred = PoseBatch(target.t + 0.1, torch.nn.functional.normalize(target.q + 0.2, dim=-1))
    plus = value(loss(pred, target))
    minus = value(loss(pred, PoseBatch(target.t, -target.q)))
    assert plus > 0.1
    assert minus == pytest.approx(plus, rel=1e-12)


# --------------------------------------------------------------------------- homoscedastic


@pytest.mark.parametrize(("norm", "l_t", "l_q"), [("l1", 7.0, D90_L1), ("l2", 5.0, D90_L2)])
def test_homoscedastic_value(norm: str, l_t: float, l_q: float) -> None:
    pred = poses([[[3.0, 4.0, 0.0]]], [[YAW_90]])
    target = poses([[[0.0, 0.0, 0.0]]], [[IDENTITY]])
    out = make("homoscedastic", {"norm": norm})(pred, target)
    assert value(out, "t") == pytest.approx(l_t)
    assert value(out, "q") == pytest.approx(l_q)
    assert value(out) == pytest.approx(l_t * 1.0 + 0.0 + l_q * E3 - 3.0)
    custom = make("homoscedastic", {"norm": norm, "s_t_init": 1.0, "s_q_init": -2})(pred, target)
    assert value(custom) == pytest.approx(l_t * math.exp(-1.0) + 1.0 + l_q * math.exp(2.0) - 2.0)


def test_homoscedastic_learned_parameters() -> None:
    loss = make("homoscedastic")
    params = dict(loss.named_parameters())
    assert set(params) == {"s_t", "s_q"}
    assert float(params["s_t"].detach()) == 0.0
    assert float(params["s_q"].detach()) == -3.0
    pred = poses([[[3.0, 4.0, 0.0]]], [[YAW_90]])
    target = poses([[[0.0, 0.0, 0.0]]], [[IDENTITY]])
    loss(pred, target)["total"].backward()
    # d/ds (L e^-s + s) = 1 - L e^-s, with L_t = 7 (L1), L_q = 1 (L1).
    assert params["s_t"].grad is not None and params["s_q"].grad is not None
    assert float(params["s_t"].grad) == pytest.approx(1.0 - 7.0)
    assert float(params["s_q"].grad) == pytest.approx(1.0 - E3)


# --------------------------------------------------------------------------- relative (MapNet)


def test_relative_value_logq() -> None:
    # Truth: frame 0 at the origin, frame 1 one metre ahead, both unrotated.
    # Prediction: frame 0 yawed +90°, frame 1 exact.  Relative prediction T0^-1 T1: translation
    # R_z(-90°)·(1, 0, 0) = (0, -1, 0) vs (1, 0, 0) -> L1 2; rotation a -90° yaw -> log q = (0, 0, -π/4).
    pred = poses([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]], [[YAW_90, IDENTITY]])
    target = poses([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]], [[IDENTITY, IDENTITY]])
    out = make("relative", {"tuple_length": 2})(pred, target)
    assert value(out, "t") == pytest.approx(0.0)
    assert value(out, "q") == pytest.approx(math.pi / 8)  # mean over K of (π/4, 0)
    assert value(out, "t_rel") == pytest.approx(2.0)
    assert value(out, "q_rel") == pytest.approx(math.pi / 4)
    expected = 0.0 + (math.pi / 8) * E3 - 3.0 + 2.0 + 0.0 + (math.pi / 4) * E3 - 3.0
    assert value(out) == pytest.approx(expected)


def test_relative_logq_has_a_seam_at_180_degrees_that_the_quaternion_distance_has_not() -> None:
    # Yaw +179° predicted, -179° true: 2° apart. MapNet's log q flips sign across 180°, so its
    # distance is |179° - (-179°)| / 2 = 3.124 rad (the ablation's reason for a "quat" setting).
    yaw = math.radians(179.0)
    near = (0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2))
    across = (0.0, 0.0, -math.sin(yaw / 2), math.cos(yaw / 2))
    pred, target = poses([[[0.0] * 3] * 2], [[near] * 2]), poses([[[0.0] * 3] * 2], [[across] * 2])
    logq = make("relative", {"tuple_length": 2})(pred, target)
    quat = make("relative", {"tuple_length": 2, "rotation": "quat"})(pred, target)
    assert value(logq, "q") == pytest.approx(math.radians(358.0) / 2, abs=1e-5)
    assert value(quat, "q") == pytest.approx(2 * math.sin(math.radians(2.0) / 4), abs=1e-5)  # only w differs
    assert value(logq, "q_rel") == pytest.approx(0.0, abs=1e-6)  # relative motions are small: no seam


def test_relative_value_quat_three_frames() -> None:
    # Frames at x = 0, 1, 2; the last predicted at x = 2.5 and yawed +90°.
    target = poses([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [2.0, 0.0, 0.0]]], [[IDENTITY] * 3])
    pred = poses([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [2.5, 0.0, 0.0]]], [[IDENTITY, IDENTITY, YAW_90]])
    params = {"rotation": "quat", "s_t_init": 0, "s_q_init": 0, "s_t_rel_init": 0, "s_q_rel_init": 0}
    out = make("relative", params)(pred, target)
    assert value(out, "t") == pytest.approx(0.5 / 3)
    assert value(out, "q") == pytest.approx(D90_L1 / 3)
    assert value(out, "t_rel") == pytest.approx(0.5 / 2)  # pairs (0,1) exact, (1,2) off by 0.5 m
    assert value(out, "q_rel") == pytest.approx(D90_L1 / 2)
    assert value(out) == pytest.approx(0.5 / 3 + D90_L1 / 3 + 0.25 + D90_L1 / 2)


# --------------------------------------------------------------------------- geometric consistency


def test_geometric_consistency_value() -> None:
    target = poses([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]], [[IDENTITY, IDENTITY]])
    # Frame 1 predicted at (4, 4, 0) and yawed 90°: absolute error 5 m on frame 1 only, predicted motion
    # (4, 4, 0) vs (1, 0, 0) -> 5 m; predicted relative rotation a 90° yaw.
    pred = poses([[[0.0, 0.0, 0.0], [4.0, 4.0, 0.0]]], [[IDENTITY, YAW_90]])
    out = make("geometric_consistency")(pred, target)
    assert value(out, "t") == pytest.approx(2.5)
    assert value(out, "t_odom") == pytest.approx(5.0)
    assert value(out, "q") == pytest.approx(D90_L2 / 2)
    assert value(out, "q_odom") == pytest.approx(D90_L2)
    assert value(out) == pytest.approx((2.5 + 5.0) + 0.0 + 1.5 * D90_L2 * E3 - 3.0)


def test_geometric_consistency_common_offset_pays_absolute_only() -> None:
    target = poses([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]], [[IDENTITY, IDENTITY]])
    # Both frames shifted by (3, 4, 0) and yawed 90°: consistent motion, wrong place.
    pred = poses([[[3.0, 4.0, 0.0], [4.0, 4.0, 0.0]]], [[YAW_90, YAW_90]])
    out = make("geometric_consistency", {"s_q_init": 0.0})(pred, target)
    assert value(out, "t") == pytest.approx(5.0)
    assert value(out, "q") == pytest.approx(D90_L2)
    assert value(out, "t_odom") == pytest.approx(0.0, abs=1e-12)
    assert value(out, "q_odom") == pytest.approx(0.0, abs=1e-12)
    assert value(out) == pytest.approx(5.0 + D90_L2)


def test_geometric_consistency_odom_weight_scales_the_odometry_terms() -> None:
    target = poses([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]], [[IDENTITY, IDENTITY]])
    pred = poses([[[0.0, 0.0, 0.0], [4.0, 4.0, 0.0]]], [[IDENTITY, IDENTITY]])
    # t: 2.5 m mean absolute error, t_odom: 5 m; rotations exact.
    out = make("geometric_consistency", {"odom_weight": 0.2, "s_q_init": 0.0})(pred, target)
    assert value(out) == pytest.approx(2.5 + 0.2 * 5.0)


@pytest.mark.parametrize("name", ["relative", "geometric_consistency", "siamese_metric"])
def test_fixed_weights_keep_the_initial_log_variances(name: str) -> None:
    learned, fixed = make(name), make(name, {"learn_weights": False, "s_t_init": -1.0})
    # the s_* log-variances (siamese_metric's embedding scale has its own switch)
    assert all(p.requires_grad for n, p in learned.named_parameters() if n.startswith("s_"))
    assert not any(p.requires_grad for p in fixed.parameters())
    # same state keys either way: a checkpoint loads into both
    assert set(fixed.state_dict()) == set(learned.state_dict())
    target = random_target(3, 2)
    pred = random_target(3, 2, seed=1)
    pred.t.requires_grad_(True)
    pred.embedding = torch.randn(3, 2, 5, dtype=torch.float64)
    out = fixed(pred, target)
    out["total"].backward()
    assert value(out, "s_t") == -1.0
    assert pred.t.grad is not None and all(p.grad is None for p in fixed.parameters())


# --------------------------------------------------------------------------- coupled


def test_coupled_value() -> None:
    loss = make("coupled", {"beta": 2.0, "gamma": 0.5, "distance": 3, "axis": [2, 0, 0]})
    target = poses([[[0.0, 0.0, 0.0]]], [[IDENTITY]])
    # Yawed 90°: the viewed point moves from (3, 0, 0) to (0, 3, 0), 3√2 m away.
    out = loss(poses([[[0.0, 0.0, 0.0]]], [[YAW_90]]), target)
    assert value(out, "coupling") == pytest.approx(3 * math.sqrt(2))
    assert value(out) == pytest.approx(2.0 * D90_L2 + 0.5 * 3 * math.sqrt(2))
    # Shifted by (3, 4, 0): the viewed point moves with it.
    out = loss(poses([[[3.0, 4.0, 0.0]]], [[IDENTITY]]), target)
    assert value(out) == pytest.approx(5.0 + 0.5 * 5.0)


def test_coupled_axis_is_base_frame() -> None:
    # Viewing axis base +z (up): a yaw about z leaves the viewed point where it was.
    loss = make("coupled", {"axis": [0.0, 0.0, 1.0], "gamma": 1.0, "beta": 0.0})
    out = loss(poses([[[0.0, 0.0, 0.0]]], [[YAW_90]]), poses([[[0.0, 0.0, 0.0]]], [[IDENTITY]]))
    assert value(out, "coupling") == pytest.approx(0.0, abs=1e-12)


def test_coupled_learned_weights() -> None:
    loss = make("coupled", {"learn_weights": True, "s_t_init": 1.0, "s_q_init": -2.0, "distance": 3})
    assert set(dict(loss.named_parameters())) == {"s_t", "s_q", "s_coupling"}
    target = poses([[[0.0, 0.0, 0.0]]], [[IDENTITY]])
    out = loss(poses([[[0.0, 0.0, 0.0]]], [[YAW_90]]), target)
    coupling = 3 * math.sqrt(2)
    # beta and gamma are not used: the learned log-variances weight the three terms
    expected = 0.0 + 1.0 + D90_L2 * math.exp(2.0) - 2.0 + coupling + 0.0
    assert value(out) == pytest.approx(expected)
    out["total"].backward()
    assert float(loss.s_coupling.grad) == pytest.approx(1.0 - coupling)
    assert make("coupled").state_dict() == {}  # fixed weights by default: no parameters


# --------------------------------------------------------------------------- reprojection


def test_reprojection_scene_point_value() -> None:
    # Base at the origin, camera 0.1 m ahead looking along +x; a point 2 m ahead of the base is 1.9 m in
    # front of the camera, at the principal point. Base predicted 0.2 m to the left (+y): the point lies
    # 0.2 m to the right of the optical axis -> u = 50 + 100 * 0.2 / 1.9, an error of 200/19 px.
    target = poses([[[0.0, 0.0, 0.0]]], [[IDENTITY]])
    pred = poses([[[0.0, 0.2, 0.0]]], [[IDENTITY]])
    points = torch.tensor([[[2.0, 0.0, 0.0]]], dtype=torch.float64)
    out = make("reprojection", camera=CAMERA)(pred, target, points=points)
    assert value(out) == pytest.approx(200 / 19)
    normalized = make("reprojection", {"normalize": True}, camera=CAMERA)(pred, target, points=points)
    assert value(normalized) == pytest.approx(200 / 19 / math.hypot(100, 80))
    assert value(normalized, "reproj_px") == pytest.approx(200 / 19)


def test_reprojection_grid_value_and_clip() -> None:
    # A sideways shift of 0.2 m keeps depths and moves a point at depth d by fx·0.2/d pixels:
    # 20, 10, 5, 2.5 px at depths 1, 2, 4, 8 m, the same for every grid pixel.
    target = poses([[[1.0, 2.0, 0.5]]], [[YAW_90]])
    pred = poses([[[1.0 - 0.2, 2.0, 0.5]]], [[YAW_90]])  # base +y is map -x after the 90° yaw
    out = make("reprojection", camera=CAMERA)(pred, target)
    assert value(out) == pytest.approx((20 + 10 + 5 + 2.5) / 4)
    clipped = make("reprojection", {"max_error_px": 15}, camera=CAMERA)(pred, target)
    assert value(clipped) == pytest.approx((15 + 10 + 5 + 2.5) / 4)


def test_reprojection_facing_away_is_finite_and_clipped() -> None:
    loss = make("reprojection", {"max_error_px": 100.0}, camera=CAMERA)
    target = poses([[[0.0, 0.0, 0.0]]], [[IDENTITY]])
    pred_t = torch.zeros(1, 1, 3, dtype=torch.float64, requires_grad=True)
    pred_q = torch.tensor([[YAW_180]], dtype=torch.float64, requires_grad=True)
    out = loss(PoseBatch(pred_t, pred_q), target)
    total = out["total"]
    assert torch.isfinite(total)
    assert 50.0 < float(total.detach()) <= 100.0  # most points behind the camera, clipped at 100 px
    total.backward()
    assert pred_t.grad is not None and pred_q.grad is not None
    assert torch.isfinite(pred_t.grad).all() and torch.isfinite(pred_q.grad).all()


def test_reprojection_needs_camera() -> None:
    with pytest.raises(ValueError, match="camera"):
        build_loss("reprojection")


# --------------------------------------------------------------------------- siamese metric


@pytest.mark.parametrize(("feature_gap", "weighted"), [(1.0, True), (10.0, False)])
def test_siamese_metric_value(feature_gap: float, weighted: bool) -> None:
    # Pose distance of the pair: 5 m (3-4-5) + β_r·π/2 (a 90° yaw), β_r = 2 -> 5 + π; λ = 0.5.
    loss = make("siamese_metric", {"lam": 0.5, "beta_r": 2.0, "metric_weight": 2.0, "eps": 1e-9})
    target = poses([[[0.0, 0.0, 0.0], [3.0, 4.0, 0.0]]], [[IDENTITY, YAW_90]])
    pred = poses(
        [[[0.0, 0.0, 0.0], [3.0, 4.0, 0.0]]], [[IDENTITY, YAW_90]], [[[0.0, 0.0], [feature_gap, 0.0]]]
    )
    scaled = 0.5 * (5.0 + math.pi)
    # Embeddings closer than λ·d: weight 1 + (λd - δ)/λd; farther: weight 1.
    weight = 1.0 + (scaled - feature_gap) / scaled if weighted else 1.0
    metric = weight * (feature_gap - scaled) ** 2
    out = loss(pred, target)
    assert value(out, "metric") == pytest.approx(metric)
    for part in ("t", "q", "t_rel", "q_rel"):
        assert value(out, part) == pytest.approx(0.0, abs=1e-12)
    assert value(out) == pytest.approx(-6.0 + 2.0 * metric)


def test_siamese_metric_learned_embedding_scale_is_met_by_the_scale_not_by_the_embedding() -> None:
    # Pose distance 5 m (λ 1, β_r 1, no rotation); embeddings 20 apart. With the scale e^a at
    # a = ln 0.25 the scaled distance is exactly 5: no metric term.
    target = poses([[[0.0, 0.0, 0.0], [3.0, 4.0, 0.0]]], [[IDENTITY, IDENTITY]])
    embedding = torch.tensor([[[0.0, 0.0], [20.0, 0.0]]], requires_grad=True)
    pred = PoseBatch(t=target.t, q=target.q, embedding=embedding)
    fixed = make("siamese_metric")
    assert not fixed.log_embedding_scale.requires_grad  # off by default: the published form
    assert value(fixed(pred, target), "metric") == pytest.approx(15.0**2)
    exact = make(
        "siamese_metric", {"learn_embedding_scale": True, "log_embedding_scale_init": math.log(0.25)}
    )
    out = exact(pred, target)
    assert value(out, "metric") == pytest.approx(0.0, abs=1e-10)
    assert value(out, "embedding_log_scale") == pytest.approx(math.log(0.25))
    # From a = 0 the gradient lowers a (shrinks the scale) and, per unit, the embedding gap alike.
    learned = make("siamese_metric", {"learn_embedding_scale": True})
    learned(pred, target)["total"].backward()  # the pose terms are 0: only the metric term moves a
    assert float(learned.log_embedding_scale.grad) == pytest.approx(2 * 15.0 * 20.0)  # d/da (20e^a - 5)²
    assert embedding.grad is not None and float(embedding.grad[0, 1, 0]) == pytest.approx(2 * 15.0)


def test_siamese_metric_relative_term() -> None:
    loss = make("siamese_metric", {"s_q_init": 0.0, "s_q_rel_init": 0.0, "metric_weight": 0.0})
    target = poses([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]], [[IDENTITY, IDENTITY]])
    pred = poses([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]], [[YAW_90, IDENTITY]], [[[0.0], [1.0]]])
    out = loss(pred, target)
    # Relative translation R_z(-90°)·(1,0,0) = (0,-1,0) vs (1,0,0): L1 2; relative rotation a -90° yaw.
    assert value(out, "t_rel") == pytest.approx(2.0)
    assert value(out, "q_rel") == pytest.approx(D90_L1)
    assert value(out, "q") == pytest.approx(D90_L1 / 2)
    assert value(out) == pytest.approx(D90_L1 / 2 + 2.0 + D90_L1)


def test_siamese_metric_needs_embedding() -> None:
    target = random_target(2, 2)
    with pytest.raises(ValueError, match="embedding"):
        make("siamese_metric")(target, target)


# --------------------------------------------------------------------------- every loss


def _build_any(name: str, small: bool = False) -> PoseLoss:
    if name == "reprojection":  # `small`: fewer points, for a faster gradcheck
        return make(name, {"grid_size": 2, "depths": [1.0, 3.0]} if small else None, camera=CAMERA)
    return make(name)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_gradcheck(name: str) -> None:
    loss = _build_any(name, small=True)
    k = required_tuple_length(name)
    target = random_target(2, k, seed=3)
    gen = torch.Generator().manual_seed(4)
    noise = 0.03 if name == "reprojection" else 0.3  # keep reprojection errors below the clip
    pred_t = (target.t + noise * torch.randn(2, k, 3, generator=gen, dtype=torch.float64)).requires_grad_()
    # Un-normalized predicted quaternions: the losses normalize them.
    pred_q = (
        1.3 * target.q + noise * torch.randn(2, k, 4, generator=gen, dtype=torch.float64)
    ).requires_grad_()
    embedding = torch.randn(2, k, 5, generator=gen, dtype=torch.float64).requires_grad_()
    names = [n for n, _ in loss.named_parameters()]
    learned = [p.detach().clone().requires_grad_() for _, p in loss.named_parameters()]

    def total(t: torch.Tensor, q: torch.Tensor, e: torch.Tensor, *s: torch.Tensor) -> torch.Tensor:
        out: dict[str, torch.Tensor] = functional_call(
            loss, dict(zip(names, s, strict=True)), (PoseBatch(t, q, e), target)
        )
        return out["total"]

    assert torch.autograd.gradcheck(total, (pred_t, pred_q, embedding, *learned))


@pytest.mark.parametrize(
    ("name", "s_sum"),
    [
        ("posenet", 0.0),
        ("homoscedastic", -3.0),
        ("relative", -6.0),
        ("geometric_consistency", -3.0),
        ("coupled", 0.0),
        ("reprojection", 0.0),
        ("siamese_metric", -6.0),
    ],
)
def test_zero_error_leaves_only_s_terms(name: str, s_sum: float) -> None:
    loss = _build_any(name)
    target = random_target(3, required_tuple_length(name), seed=5)
    embedding = None
    if name == "siamese_metric":  # embeddings exactly λ·d apart (λ = β_r = 1): the metric term vanishes
        d = (target.t[:, 1] - target.t[:, 0]).norm(dim=-1)
        d = d + 4 * torch.asin(
            0.5
            * torch.minimum(
                (target.q[:, 1] - target.q[:, 0]).norm(dim=-1), (target.q[:, 1] + target.q[:, 0]).norm(dim=-1)
            )
        )
        embedding = torch.stack((torch.zeros(3, 2, dtype=torch.float64), torch.stack((d, 0 * d), -1)), dim=1)
    out = loss(PoseBatch(target.t.clone(), target.q.clone(), embedding), target)
    for key, part in out.items():
        if key != "total" and not key.startswith("s_"):
            assert float(part) == pytest.approx(0.0, abs=1e-6), key
    assert value(out) == pytest.approx(s_sum, abs=1e-6)


@pytest.mark.parametrize("name", ["relative", "geometric_consistency", "siamese_metric"])
def test_tuple_losses_reject_single_frames(name: str) -> None:
    target = random_target(2, 1)
    pred = PoseBatch(target.t, target.q, torch.zeros(2, 1, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=rf"{name} loss needs tuples of K >= 2 .*got K=1"):
        make(name)(pred, target)


# --------------------------------------------------------------------------- registry


def test_registry_names() -> None:
    assert set(LOSSES) == {
        "posenet",
        "homoscedastic",
        "relative",
        "geometric_consistency",
        "coupled",
        "reprojection",
        "siamese_metric",
    }


def test_registry_unknown_name_lists_known() -> None:
    with pytest.raises(ValueError, match="unknown loss 'mapnet'") as err:
        build_loss("mapnet")
    assert all(name in str(err.value) for name in LOSSES)
    with pytest.raises(ValueError, match="unknown loss"):
        required_tuple_length("mapnet")


def test_registry_unknown_key_names_loss_key_and_valid_keys() -> None:
    with pytest.raises(ValueError, match="homoscedastic") as err:
        build_loss("homoscedastic", {"s_x_init": 0.0})
    message = str(err.value)
    assert "'s_x_init'" in message
    assert all(key in message for key in ("norm", "s_t_init", "s_q_init"))


@pytest.mark.parametrize(
    ("name", "params", "match"),
    [
        ("posenet", {"beta": "big"}, "beta"),
        ("posenet", {"beta": True}, "beta"),
        ("homoscedastic", {"norm": "l3"}, "norm"),
        ("relative", {"tuple_length": 2.5}, "tuple_length"),
        ("relative", {"tuple_length": 1}, "tuple_length"),
        ("coupled", {"axis": [1.0, 0.0]}, "axis"),
        ("coupled", {"axis": [0.0, 0.0, 0.0]}, "axis"),
        ("posenet", {"beta": -1.0}, "beta"),
    ],
)
def test_registry_rejects_bad_values(name: str, params: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_loss(name, params)


def test_registry_coerces_config_values() -> None:
    loss = build_loss("coupled", {"axis": [0, 1, 0], "beta": 2})
    assert loss.params.axis == (0.0, 1.0, 0.0)
    assert isinstance(loss.params.beta, float)
    assert loss.params.gamma == 1.0  # default kept


def test_required_tuple_length() -> None:
    assert required_tuple_length("posenet") == 1
    assert required_tuple_length("homoscedastic", {"norm": "l2"}) == 1
    assert required_tuple_length("coupled") == 1
    assert required_tuple_length("reprojection") == 1
    assert required_tuple_length("relative") == 3
    assert required_tuple_length("relative", {"tuple_length": 5}) == 5
    assert required_tuple_length("geometric_consistency") == 2
    assert required_tuple_length("siamese_metric") == 2
