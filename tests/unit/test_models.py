"""Models: fusion modes, the mask contract of the MC-dropout head, rotation outputs, dof 3."""

from __future__ import annotations

import pytest
import torch
from scipy.spatial.transform import Rotation

from pose_regressor_training.models import ModelConfig, build_model
from pose_regressor_training.models.backbones import (
    PretrainedWeightsUnavailableError,
    build_backbone,
    widen_first_conv,
)
from pose_regressor_training.models.model import images_to_unit_float, log_quaternion_to_quaternion


@pytest.mark.parametrize("fusion", ["input", "mosaic", "late"])
@pytest.mark.parametrize("backbone", ["small_cnn", "resnet18", "mobilenet_v3_small"])
def test_shapes_for_every_fusion(backbone: str, fusion: str) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone=backbone, fusion=fusion, num_cameras=3, hidden_dim=32)).eval()
    out = model(torch.rand(2, 3, 3, 48, 64), model.random_masks(2, 5))
    assert out.t.shape == (2, 5, 3) and out.q.shape == (2, 5, 4)
    torch.testing.assert_close(out.q.norm(dim=-1), torch.ones(2, 5))
    assert (out.q[..., 3] >= 0).all()


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
