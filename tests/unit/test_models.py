"""Models: fusion modes, the mask contract of the MC-dropout head, rotation outputs, dof 3."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.spatial.transform import Rotation

from pose_regressor_training.models import ModelConfig, build_model
from pose_regressor_training.models.backbones import (
    PretrainedWeightsUnavailableError,
    build_backbone,
    widen_first_conv,
)
from pose_regressor_training.models.model import (
    images_to_unit_float,
    log_quaternion_to_quaternion,
    rot6d_to_quaternion,
)


@pytest.mark.parametrize("fusion", ["input", "mosaic", "late"])
@pytest.mark.parametrize("backbone", ["small_cnn", "resnet18", "mobilenet_v3_small"])
def test_shapes_for_every_fusion(backbone: str, fusion: str) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone=backbone, fusion=fusion, num_cameras=3, hidden_dim=32)).eval()
    out = model(torch.rand(2, 3, 3, 48, 64), model.random_masks(2, 5))
    assert out.t.shape == (2, 5, 3) and out.q.shape == (2, 5, 4)
    torch.testing.assert_close(out.q.norm(dim=-1), torch.ones(2, 5))
    assert (out.q[..., 3] >= 0).all()


def test_small_cnn_stages_halve_the_resolution_each() -> None:
    backbone = build_backbone("small_cnn", False, 12, small_cnn_width=16, small_cnn_stages=5)
    assert len(backbone.features) == 5 and backbone.out_features == 16 * 2**4 * 4
    features = backbone.features(torch.rand(2, 12, 96, 128))
    assert features.shape == (2, 256, 3, 4)  # 128x96 / 2^5, as 4 stages give from 64x48
    with pytest.raises(ValueError, match=r"small_cnn_stages must be 1\.\.6"):
        ModelConfig(backbone="small_cnn", small_cnn_stages=0)


def test_small_cnn_pool_grid_keeps_the_whole_feature_map() -> None:
    backbone = build_backbone("small_cnn", False, 12, small_cnn_width=8, small_cnn_pool=(3, 4))
    assert backbone.out_features == 64 * 3 * 4
    x = torch.rand(2, 12, 48, 64)
    # the grid of the whole 3 x 4 map is the map itself, flattened
    torch.testing.assert_close(backbone(x), torch.flatten(backbone.features(x), 1))
    model = build_model(
        ModelConfig(backbone="small_cnn", num_cameras=4, hidden_dim=16, small_cnn_pool=(3, 4))
    )
    assert model(torch.rand(2, 4, 3, 48, 64)).t.shape == (2, 1, 3)
    assert ModelConfig(
        backbone="small_cnn", small_cnn_pool=(1, 8), fusion="mosaic", num_cameras=2
    ).small_cnn_map == (
        3,
        8,
    )
    for grid in ((4, 4), (0, 2)):
        with pytest.raises(ValueError, match=r"small_cnn_pool must be .* 3 x 4 \(the input halved 4 times\)"):
            ModelConfig(backbone="small_cnn", small_cnn_pool=grid)
    ModelConfig(backbone="resnet18", small_cnn_pool=(9, 9))  # only small_cnn has the grid


def test_mask_of_ones_is_the_deterministic_prediction_and_masks_change_samples() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="small_cnn", num_cameras=2, hidden_dim=64, dropout=0.5)).eval()
    x = torch.rand(1, 2, 3, 48, 64)
    det = model(x)
    ones = model(x, torch.ones(1, 4, 64))
    torch.testing.assert_close(ones.t, det.t.expand(1, 4, 3))
    sampled = model(x, model.random_masks(1, 8, torch.Generator().manual_seed(1)))
    assert sampled.t.std(dim=1).max() > 0


def test_random_masks_are_scaled_bernoulli() -> None:
    model = build_model(ModelConfig(backbone="small_cnn", hidden_dim=1000, dropout=0.25))
    masks = model.random_masks(4, 50, torch.Generator().manual_seed(0))
    assert torch.unique(masks).tolist() == pytest.approx([0.0, 1 / 0.75])
    assert (masks == 0).float().mean().item() == pytest.approx(0.25, abs=0.01)
    assert masks.mean().item() == pytest.approx(1.0, abs=0.02)  # expectation preserved


def test_translation_is_denormalized_to_metres() -> None:
    model = build_model(ModelConfig(backbone="small_cnn", hidden_dim=8)).eval()
    with torch.no_grad():
        model.fc_out.weight.zero_()
        model.fc_out.bias.copy_(torch.tensor([1.0, -2.0, 0.5, 0.0, 0.0, 0.0, 1.0]))
    model.set_translation_stats(torch.tensor([10.0, 20.0, 1.0]), torch.tensor([2.0, 3.0, 0.5]))
    out = model(torch.rand(1, 1, 3, 32, 32))
    torch.testing.assert_close(out.t[0, 0], torch.tensor([12.0, 14.0, 1.25]))
    torch.testing.assert_close(out.q[0, 0], torch.tensor([0.0, 0.0, 0.0, 1.0]))


def test_dof3_regresses_yaw_at_fixed_height() -> None:
    model = build_model(ModelConfig(backbone="small_cnn", hidden_dim=8, dof=3)).eval()
    yaw = 2.5  # rad; the half-angle quaternion of a yaw beyond 90 deg
    with torch.no_grad():
        model.fc_out.weight.zero_()
        model.fc_out.bias.copy_(
            torch.tensor([0.5, 0.0, -torch.sin(torch.tensor(yaw / 2)), -torch.cos(torch.tensor(yaw / 2))])
        )
    model.set_translation_stats(torch.tensor([1.0, 2.0, 0.25]), torch.tensor([1.0, 1.0, 0.0]))
    out = model(torch.rand(1, 1, 3, 32, 32))
    torch.testing.assert_close(out.t[0, 0], torch.tensor([1.5, 2.0, 0.25]))
    expected = Rotation.from_euler("z", yaw).as_quat()
    torch.testing.assert_close(out.q[0, 0].double(), torch.tensor(expected), atol=1e-6, rtol=0)


def test_log_quaternion_matches_scipy() -> None:
    rotvec = torch.tensor([[0.3, -0.2, 0.9], [0.0, 0.0, 0.0], [1e-9, 0.0, 0.0]], dtype=torch.float64)
    q = log_quaternion_to_quaternion(rotvec / 2)  # log q = (angle / 2) * axis
    expected = Rotation.from_rotvec(rotvec.numpy()).as_quat()
    torch.testing.assert_close(q, torch.tensor(expected), atol=1e-9, rtol=0)


def _first_two_columns(rotation: Rotation) -> torch.Tensor:
    m = rotation.as_matrix()
    return torch.tensor(m[:, :, :2].transpose(0, 2, 1).reshape(-1, 6))


def test_rot6d_matches_scipy_for_every_branch_of_the_matrix_conversion() -> None:
    # Random rotations, and 180-degree turns about each axis (trace -1: the w branch is unusable)
    # and near them, so all four of Shepperd's branches are taken.
    half_turns = Rotation.from_rotvec(torch.pi * torch.eye(3).repeat(2, 1).numpy())
    near = Rotation.from_rotvec((torch.pi - 1e-3) * torch.eye(3).numpy())
    for rotation in (Rotation.random(2000, random_state=0), half_turns, near):
        q = rot6d_to_quaternion(_first_two_columns(rotation))
        error = (Rotation.from_quat(q.numpy()).inv() * rotation).magnitude()
        assert error.max() < 1e-6
        torch.testing.assert_close(q.norm(dim=-1), torch.ones(len(q), dtype=q.dtype))


def test_rot6d_orthonormalizes_any_two_independent_vectors() -> None:
    rotation = Rotation.from_euler("ZYX", [[2.8, 0.1, -0.07]])  # heading near the quaternion seam
    columns = _first_two_columns(rotation)[0]
    x, y = columns[:3], columns[3:]
    # Scaling both and tilting the second towards the first changes nothing (Gram-Schmidt).
    distorted = torch.cat([3.0 * x, 0.5 * y + 0.8 * x])[None]
    q = rot6d_to_quaternion(distorted)
    assert (Rotation.from_quat(q.numpy()).inv() * rotation).magnitude()[0] < 1e-6


def test_rot6d_gradients_are_finite_everywhere() -> None:
    r = torch.randn(4000, 6, dtype=torch.float64, requires_grad=True)
    half_turn = _first_two_columns(Rotation.from_rotvec([[0.0, 0.0, torch.pi]])).requires_grad_(True)
    for value in (r, half_turn):
        rot6d_to_quaternion(value).pow(2).sum(dim=-1).mean().backward()  # type: ignore[union-attr]
        assert value.grad is not None and torch.isfinite(value.grad).all()
    small = torch.randn(8, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: rot6d_to_quaternion(v, eps=1e-12), (small,))


def test_rot6d_head_starts_at_the_identity_and_outputs_unit_quaternions() -> None:
    model = build_model(ModelConfig(backbone="small_cnn", hidden_dim=8, rotation="rot6d")).eval()
    assert model.fc_out.out_features == 3 + 6
    with torch.no_grad():
        model.fc_out.weight.zero_()
        out = model(torch.rand(2, 1, 3, 32, 32))
    torch.testing.assert_close(out.q[:, 0], torch.tensor([[0.0, 0.0, 0.0, 1.0]] * 2))


def test_widened_first_conv_gives_pretrained_response_for_identical_images() -> None:
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    wide = widen_first_conv(conv, 12)
    x = torch.rand(1, 3, 10, 10)
    torch.testing.assert_close(wide(x.repeat(1, 4, 1, 1)), conv(x))


def test_images_to_unit_float_layout() -> None:
    images = torch.zeros(1, 2, 4, 5, 3, dtype=torch.uint8)
    images[0, 1, 2, 3] = torch.tensor([255, 0, 51], dtype=torch.uint8)
    x = images_to_unit_float(images)
    assert x.shape == (1, 2, 3, 4, 5)
    torch.testing.assert_close(x[0, 1, :, 2, 3], torch.tensor([1.0, 0.0, 0.2]))


def test_config_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="backbone must be one of"):
        ModelConfig(backbone="vgg")
    with pytest.raises(ValueError, match="dropout"):
        ModelConfig(dropout=1.0)
    with pytest.raises(ValueError, match="small_cnn has no pretrained"):
        build_backbone("small_cnn", True, 3)


def test_pretrained_weights_offline_give_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache
    monkeypatch.setattr("torch.hub.download_url_to_file", _offline)
    with pytest.raises(PretrainedWeightsUnavailableError, match=r"model\.pretrained=false"):
        build_backbone("resnet18", True, 3)


def _offline(*args: object, **kwargs: object) -> None:
    raise OSError("network unreachable")


def test_aux_odometry_branch_shares_the_first_stages_only() -> None:
    torch.manual_seed(0)
    config = ModelConfig(
        backbone="small_cnn", num_cameras=2, hidden_dim=16, aux_odometry=True, aux_shared_stages=2
    )
    model = build_model(config).train()
    assert model.odometry is not None
    x = torch.rand(4, 2, 3, 48, 64)
    out = model(x, model.random_masks(4, 1))
    assert out.odometry_features is not None and out.odometry_features.shape == (4, 1024)
    # The global embedding is exactly what the backbone alone computes.
    torch.testing.assert_close(out.embedding, model.embed(x))
    t_rel, q_rel = model.odometry.relative_pose(out.odometry_features[:2], out.odometry_features[2:])
    assert t_rel.shape == (2, 3) and q_rel.shape == (2, 4)
    # A loss on the odometry output reaches the shared stages and the branch, not the unshared main stages.
    model.zero_grad()
    model.odometry.loss(t_rel, q_rel, torch.zeros(2, 3), torch.tensor([[0.0, 0, 0, 1]] * 2)).backward()
    stages = list(model.backbone.features.children())
    assert stages[0][0].weight.grad is not None and stages[0][0].weight.grad.abs().sum() > 0
    assert stages[3][0].weight.grad is None
    assert next(model.odometry.stages.parameters()).grad is not None
    # Not used at inference (and so never exported).
    assert model.eval()(x).odometry_features is None


def _track_reference(model: torch.nn.Module, images: torch.Tensor, masks: torch.Tensor, step: float):  # type: ignore[no-untyped-def]
    """Track averaging written independently: augment's shift, roma's product, the same mean rule."""
    import roma

    from pose_regressor_training.rig_symmetry import apply_track_shift

    t_all, q_all = [], []
    identity = torch.tensor([[0.0, 0.0, 0.0, 1.0]]).repeat(images.shape[0], 1)
    for k in range(images.shape[1]):
        shifted, _ = apply_track_shift(images, identity, torch.full((images.shape[0],), k), step)
        t, q = model.decode(model.hidden(model.embed(shifted)), masks)
        unyaw = torch.tensor([0.0, 0.0, math.sin(-k * step / 2), math.cos(-k * step / 2)])
        t_all.append(t)
        q_all.append(roma.quat_product(q, unyaw.expand_as(q)))
    q_stack = torch.stack(q_all, dim=1)
    q_stack = torch.where((q_stack * q_stack[:, :1]).sum(-1, keepdim=True) < 0, -q_stack, q_stack)
    q_mean = q_stack.sum(dim=1)
    q_mean = q_mean / q_mean.norm(dim=-1, keepdim=True)
    return torch.stack(t_all, dim=1).mean(dim=1), torch.where(q_mean[..., 3:] < 0, -q_mean, q_mean)


def test_track_tta_averages_the_shifted_predictions_turned_back_by_their_yaw() -> None:
    torch.manual_seed(0)
    step = math.pi / 2
    config = ModelConfig(
        backbone="small_cnn", num_cameras=4, hidden_dim=16, small_cnn_width=8, rotation="rot6d",
        track_tta=True, track_yaw_step=step,
    )  # fmt: skip
    model = build_model(config)
    with torch.no_grad():  # a head that reacts to its input, so that the four shifts disagree
        model.fc_out.weight.normal_(std=0.3)
    model.eval()
    images = torch.rand(3, 4, 3, 32, 32)
    masks = model.random_masks(1, 5)
    out = model(images, masks)
    t_ref, q_ref = _track_reference(model, images, masks, step)
    torch.testing.assert_close(out.t, t_ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.q, q_ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(model.poses(images, masks)[1], out.q)
    # Training (and the losses) see the plain, unaveraged prediction of the augmented input.
    model.train()
    plain = model(images, masks)
    t_plain, q_plain = model.decode(model.hidden(model.embed(images)), masks)
    torch.testing.assert_close(plain.t, t_plain)
    torch.testing.assert_close(plain.q, q_plain)


def test_track_tta_needs_the_rigs_yaw_step() -> None:
    with pytest.raises(ValueError, match="track_tta needs track_yaw_step"):
        ModelConfig(backbone="small_cnn", num_cameras=4, track_tta=True)


def test_embedding_dropout_masks_the_heads_input_first_and_the_hidden_layer_last() -> None:
    torch.manual_seed(0)
    common = {
        "backbone": "small_cnn", "num_cameras": 2, "hidden_dim": 16, "small_cnn_width": 8,
        "rotation": "rot6d",
    }  # fmt: skip
    plain = build_model(ModelConfig(**common)).eval()  # type: ignore[arg-type]
    dropped = build_model(ModelConfig(**common, embedding_dropout=True)).eval()  # type: ignore[arg-type]
    dropped.load_state_dict(plain.state_dict())  # no new parameters: only the mask grows
    f = plain.feature_dim
    assert (plain.mask_dim, dropped.mask_dim) == (16, f + 16)
    assert dropped.random_masks(2, 3).shape == (2, 3, f + 16)
    images = torch.rand(3, 2, 3, 32, 32)
    hidden_masks = plain.random_masks(1, 4)
    # Embedding part all ones: the plain model's samples.
    ones = torch.ones(1, 4, f)
    torch.testing.assert_close(
        dropped.poses(images, torch.cat([ones, hidden_masks], dim=-1)), plain.poses(images, hidden_masks)
    )
    # Dropping embedding unit k is the plain model with fc_hidden's column k zeroed and the rest scaled.
    embedding_mask = torch.full((1, 1, f), 1.25)
    embedding_mask[..., 3] = 0.0
    reference = build_model(ModelConfig(**common)).eval()  # type: ignore[arg-type]
    reference.load_state_dict(plain.state_dict())
    with torch.no_grad():
        reference.fc_hidden.weight.mul_(embedding_mask[0])
    torch.testing.assert_close(
        dropped.poses(images, torch.cat([embedding_mask, hidden_masks[:, :1]], dim=-1)),
        reference.poses(images, hidden_masks[:, :1]),
    )
    # Random masks on both parts: samples differ, and per sample the embedding mask matters.
    t, _ = dropped.poses(images, dropped.random_masks(1, 8))
    assert t.std(dim=1).min() > 0


def test_train_backbone_bf16_runs_the_backbone_in_bfloat16_only_while_training() -> None:
    torch.manual_seed(0)
    config = ModelConfig(
        backbone="small_cnn", num_cameras=2, hidden_dim=16, small_cnn_width=8, aux_odometry=True
    )
    model = build_model(config)
    model.train_backbone_bf16 = True
    seen: list[torch.dtype] = []
    first_conv = next(m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    first_conv.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    images = torch.rand(4, 2, 3, 32, 32)
    out = model.train()(images, model.random_masks(4, 1))
    # The head and everything after the backbone stay float32, and the backward reaches the backbone.
    assert out.t.dtype == out.embedding.dtype == torch.float32
    assert out.odometry_features is not None and out.odometry_features.dtype == torch.float32
    (out.t.sum() + out.odometry_features.sum()).backward()
    assert first_conv.weight.dtype == torch.float32
    assert first_conv.weight.grad is not None and first_conv.weight.grad.abs().sum() > 0
    model.eval()(images)  # inference (and so export) is float32
    assert seen == [torch.bfloat16, torch.float32]


def test_heads_split_the_hidden_layer_and_row_s_is_head_s_mod_k() -> None:
    torch.manual_seed(0)
    common = {
        "backbone": "small_cnn", "num_cameras": 2, "hidden_dim": 16, "small_cnn_width": 8,
        "rotation": "rot6d", "variance_head": True, "variance_head_hidden": 8,
    }  # fmt: skip
    one = build_model(ModelConfig(**common)).eval()  # type: ignore[arg-type]
    two = build_model(ModelConfig(**common, heads=2)).eval()  # type: ignore[arg-type]
    two.load_state_dict(one.state_dict())  # no new parameters: the heads are groups of units
    images = torch.rand(3, 2, 3, 32, 32)
    masks = one.random_masks(1, 4)
    t, q, log_variance = two.inference_outputs(images, masks)
    # Row s is head s mod 2: the one-head model with the other head's units masked out.
    first, second = torch.zeros(1, 1, 16), torch.zeros(1, 1, 16)
    first[..., :8], second[..., 8:] = 1.0, 1.0
    for row, units in enumerate([first, second, first, second]):
        t_ref, q_ref, lv_ref = one.inference_outputs(images, masks[:, row : row + 1] * units)
        torch.testing.assert_close(t[:, row : row + 1], t_ref)
        torch.testing.assert_close(q[:, row : row + 1], q_ref)
        torch.testing.assert_close(log_variance[:, row : row + 1], lv_ref)  # type: ignore[index]
    # The heads differ; without masks the model gives one row per head.
    ones_t, _, _ = two.inference_outputs(images, torch.ones(1, 2, 16))
    assert (ones_t[:, 0] - ones_t[:, 1]).abs().max() > 1e-6
    torch.testing.assert_close(two(images).t, ones_t)
    with pytest.raises(ValueError, match=r"heads must be 1\.\.16 and divide hidden_dim"):
        ModelConfig(**common, heads=3)  # type: ignore[arg-type]
