"""The variance head end to end without training: its loss (known values), the torch residual
against the numpy one, the covariance it adds (known numbers), per-group calibration, the bundle
contract (both scale formats, the log_variance output) and the engines, localizer and pipeline
that use it, on the tiny hand-built bundles."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from scipy.spatial.transform import Rotation

from pose_regressor.bundle import LOG_VARIANCE, BundleError, load_bundle, preprocess
from pose_regressor.engines import load_engine
from pose_regressor.engines.base import EngineError
from pose_regressor.localizer import Localizer
from pose_regressor.pipeline import LocalizationResult
from pose_regressor.uncertainty import (
    CovarianceScale,
    dropout_masks,
    estimate_from_samples,
    tangent_residual,
)
from pose_regressor_training.calibration import fit_covariance_scales
from pose_regressor_training.losses import build_loss
from pose_regressor_training.losses.variance import tangent_residual as torch_tangent_residual
from pose_regressor_training.losses.variance import variance_nll
from pose_regressor_training.models import ModelConfig, build_model
from pose_regressor_training.objective import Objective
from tests.unit.bundle_fixtures import expected_log_variance, expected_outputs, make_bundle
from tests.unit.pipeline_fixtures import bundle_pipeline, publish_one_set

SMALL = {
    "backbone": "small_cnn",
    "small_cnn_width": 8,
    "hidden_dim": 16,
    "image_width": 32,
    "image_height": 24,
}


# ------------------------------------------------------------------------------------ the loss
def test_gaussian_and_laplace_nll_known_values() -> None:
    residual = torch.tensor([[0.5, -1.0, 2.0, 0.0, 0.1, -0.3]], dtype=torch.float64)
    log_var = torch.tensor([[0.0, math.log(4.0), -1.0, 0.0, 2.0, -2.0]], dtype=torch.float64)
    var = log_var.exp()
    gaussian = (0.5 * (math.log(2 * math.pi) + log_var + residual**2 / var)).sum()
    b = (var / 2).sqrt()  # Laplace scale of that variance
    laplace = (torch.log(2 * b) + residual.abs() / b).sum()
    assert variance_nll(residual, log_var, "gaussian").item() == pytest.approx(gaussian.item(), rel=1e-12)
    assert variance_nll(residual, log_var, "laplace").item() == pytest.approx(laplace.item(), rel=1e-12)
    # one axis by hand: r = 0.5, s = 0 -> 0.5 ln(2 pi) + 0.125
    one = variance_nll(torch.tensor([[0.5]]), torch.tensor([[0.0]]), "gaussian").item()
    assert one == pytest.approx(0.5 * math.log(2 * math.pi) + 0.125)
    with pytest.raises(ValueError, match="variance_nll must be one of gaussian, laplace"):
        variance_nll(residual, log_var, "cauchy")


@pytest.mark.parametrize(("kind", "best"), [("gaussian", 0.09), ("laplace", 2 * 0.09)])
def test_nll_is_smallest_at_the_true_variance(kind: str, best: float) -> None:
    # |r| = 0.3 on every axis: the Gaussian NLL is least at variance r^2, the Laplace one at 2 r^2
    grid = torch.linspace(-6, 1, 7001, dtype=torch.float64)
    values = [
        variance_nll(torch.full((1, 6), 0.3, dtype=torch.float64), torch.full((1, 6), s), kind) for s in grid
    ]
    argmin = float(grid[int(torch.stack(values).argmin())])
    assert math.exp(argmin) == pytest.approx(best, rel=2e-3)


def test_torch_tangent_residual_equals_numpy() -> None:
    rng = np.random.default_rng(4)
    q_true = Rotation.random(16, random_state=5).as_quat()
    q_pred = Rotation.random(16, random_state=6).as_quat() * rng.choice([-1.0, 1.0], (16, 1))  # any sign
    t_true, t_pred = rng.normal(size=(16, 3)), rng.normal(size=(16, 3))
    ours = torch_tangent_residual(*(torch.from_numpy(a) for a in (t_true, q_true, t_pred, q_pred))).numpy()
    reference = np.stack(
        [tangent_residual(*args) for args in zip(t_true, q_true, t_pred, q_pred, strict=True)]
    )
    np.testing.assert_allclose(ours, reference, atol=1e-12)


def test_model_outputs_clamped_log_variances_from_the_same_masks_and_old_configs_are_unchanged() -> None:
    torch.manual_seed(0)
    plain = build_model(ModelConfig(**SMALL))
    assert not [k for k in plain.state_dict() if "log_variance" in k]  # old checkpoints load as before
    torch.manual_seed(0)
    model = build_model(ModelConfig(**SMALL, variance_head=True)).eval()
    images, masks = torch.rand(2, 1, 3, 24, 32), model.random_masks(1, 5)
    t, q, log_var = model.inference_outputs(images, masks)
    assert log_var is not None and log_var.shape == (2, 5, 6)
    t_plain, q_plain, none = plain.eval().inference_outputs(images, masks)
    assert none is None
    torch.testing.assert_close((t, q), (t_plain, q_plain))  # the pose head is the same with the same seed
    with torch.no_grad():
        model.fc_log_variance.bias.fill_(100.0)  # type: ignore[union-attr]
    with torch.no_grad():
        assert float(model.inference_outputs(images, masks)[2].max()) == 4.0  # type: ignore[index]


def test_the_log_variance_has_no_gradient_into_the_pose_model() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(**SMALL, variance_head=True)).train()
    out = model(torch.rand(2, 1, 3, 24, 32), model.random_masks(2, 1))
    assert out.log_variance is not None
    shared = [p for name, p in model.named_parameters() if not name.startswith("fc_log_variance")]
    grads = torch.autograd.grad(out.log_variance.sum(), shared, allow_unused=True, retain_graph=True)
    assert all(g is None or float(g.abs().sum()) == 0.0 for g in grads)  # the NLL trains the head only
    head = torch.autograd.grad(out.log_variance.sum(), [model.fc_log_variance.weight])[0]  # type: ignore[union-attr]
    assert float(head.abs().sum()) > 0


def test_variance_feature_gradient_scales_the_log_variance_gradient_into_the_features() -> None:
    images = torch.rand(2, 1, 3, 24, 32)
    grads, outputs = {}, {}
    for weight in (0.0, 0.25, 1.0):
        torch.manual_seed(0)
        config = ModelConfig(**SMALL, variance_head=True, variance_feature_gradient=weight)
        model = build_model(config).train()
        masks = model.random_masks(2, 3, torch.Generator().manual_seed(1))
        out = model(images, masks)
        assert out.log_variance is not None
        outputs[weight] = (out.t.detach(), out.q.detach(), out.log_variance.detach())
        grads[weight] = torch.autograd.grad(
            out.log_variance.sum(), [model.fc_hidden.weight], allow_unused=True
        )[0]
    for weight in (0.25, 1.0):  # the forward pass is the same; only the backward pass differs
        torch.testing.assert_close(outputs[weight], outputs[0.0], rtol=0, atol=0)
    assert grads[0.0] is None or float(grads[0.0].abs().sum()) == 0.0
    assert grads[0.25] is not None and grads[1.0] is not None and float(grads[1.0].abs().sum()) > 0
    torch.testing.assert_close(grads[0.25], 0.25 * grads[1.0])
    out = model.eval()(images, masks)  # out of training (export) the head reads detached features
    assert out.log_variance is not None
    assert torch.autograd.grad(out.log_variance.sum(), [model.fc_hidden.weight], allow_unused=True)[0] is None


@pytest.mark.parametrize("weight", [-0.1, 1.5, float("nan")])
def test_variance_feature_gradient_outside_0_to_1_is_refused_by_name(weight: float) -> None:
    with pytest.raises(ValueError, match="variance_feature_gradient must be in"):
        ModelConfig(**SMALL, variance_head=True, variance_feature_gradient=weight)


@pytest.mark.parametrize("k", [-1.0, 2e6, float("nan"), float("inf")])
def test_a_position_distance_variance_out_of_range_is_refused_by_name(k: float) -> None:
    with pytest.raises(ValueError, match="position_distance_variance must be in"):
        ModelConfig(**SMALL, position_distance_variance=k)


@pytest.mark.parametrize("head", [False, True])
def test_shift_variance_is_the_spread_of_the_track_shifts_about_their_mean(head: bool) -> None:
    torch.manual_seed(0)
    config = ModelConfig(
        **{**SMALL, "num_cameras": 4}, track_tta=True, track_yaw_step=math.pi / 2, shift_variance=True,
        variance_head=head,
    )  # fmt: skip
    model = build_model(config)
    model.set_translation_stats(torch.tensor([1.0, -2.0, 0.5]), torch.tensor([2.0, 1.0, 0.3]))
    # Untrained outputs vary by metres with the images once BatchNorm has the statistics of random
    # images and the head unit-scale weights (as in test_export).
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    with torch.no_grad():
        model.train()(torch.rand(8, 4, 3, 24, 32))
        torch.nn.init.normal_(model.fc_out.weight, std=0.3)
    model.eval()
    images, masks = torch.rand(3, 4, 3, 24, 32), model.random_masks(1, 2)
    with torch.no_grad():
        t, q, log_var = model.inference_outputs(images, masks)
        plain = build_model(replace(config, track_tta=False, shift_variance=False, variance_head=head)).eval()
        plain.load_state_dict(model.state_dict())
        # each shift k by hand: the cameras in shifted order, the pose turned back by -k * 90 deg
        shifts = [plain.inference_outputs(images[:, model.shift_index[k]], masks) for k in range(4)]
    assert log_var is not None and log_var.shape == (3, 2, 6)
    t_k = np.stack([out[0].double().numpy() for out in shifts], axis=1)  # [B, K, S, 3]
    unyaw = [Rotation.from_euler("z", -k * math.pi / 2) for k in range(4)]
    np.testing.assert_allclose(t.double().numpy(), t_k.mean(axis=1), atol=1e-5)
    expected = np.zeros((3, 2, 6))
    for b in range(3):
        for s_ in range(2):
            mean = Rotation.from_quat(q[b, s_].double().numpy())
            for k in range(4):
                r_k = Rotation.from_quat(shifts[k][1][b, s_].double().numpy()) * unyaw[k]
                dt = t_k[b, k, s_] - t_k[b, :, s_].mean(axis=0)
                d = np.concatenate([dt, (r_k * mean.inv()).as_rotvec()])
                expected[b, s_] += d**2 / 4
    if head:  # the variance head's variance (the mean over shifts of its log-variance) is added
        head_lv = torch.stack([out[2] for out in shifts], dim=1).mean(dim=1).double().numpy()  # type: ignore[misc]
        expected += np.exp(head_lv)
    assert expected[..., :3].min() > 1e-4 and expected[..., 3:].min() > 1e-6  # the shifts do disagree
    np.testing.assert_allclose(np.exp(log_var.double().numpy()), expected, rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("spread_rad", [0.0, 1e-5, 1e-3, 0.05])
def test_shift_variance_stays_finite_and_right_in_float16(spread_rad: float) -> None:
    """TensorRT's default precision is FP16. There the squared rotation-vector part of shifts that
    agree to within 1e-4 rad underflows to 0, and an epsilon of 1e-12 under the root is 0 too: the
    rotation variance was 0/0 = NaN for every camera set the shifts agreed on. Now it is finite in
    float16 and matches scipy's rotation vectors (float64) to float16's resolution."""
    from pose_regressor_training.models.model import _shift_variance

    rng = np.random.default_rng(0)
    t = rng.normal(size=(2, 4, 1, 3))
    rotations = [Rotation.from_rotvec(rng.normal(size=3) * spread_rad) for _ in range(8)]
    q = np.stack([r.as_quat() for r in rotations]).reshape(2, 4, 1, 4)
    q_mean = np.tile([0.0, 0.0, 0.0, 1.0], (2, 1, 1))
    expected = np.zeros((2, 1, 6))
    expected[..., :3] = ((t - t.mean(axis=1, keepdims=True)) ** 2).mean(axis=1)
    expected[..., 3:] = (np.stack([r.as_rotvec() for r in rotations]).reshape(2, 4, 1, 3) ** 2).mean(axis=1)
    for dtype, atol in ((torch.float32, 1e-9), (torch.float16, 2e-6)):
        args = [torch.as_tensor(a, dtype=dtype) for a in (t, q, t.mean(axis=1), q_mean)]
        variance = _shift_variance(*args).double().numpy()
        assert np.isfinite(variance).all(), (dtype, variance)
        np.testing.assert_allclose(variance[..., 3:], expected[..., 3:], rtol=2e-2, atol=atol)
        np.testing.assert_allclose(variance[..., :3], expected[..., :3], rtol=2e-3)


def test_shift_variance_needs_track_tta() -> None:
    with pytest.raises(ValueError, match="shift_variance is the spread of the track_tta shifts: it needs"):
        ModelConfig(**SMALL, shift_variance=True)


# ------------------------------------------------------------------------------ the estimate
def test_estimate_adds_the_mean_predicted_variance_then_scales_per_group_then_floors() -> None:
    t = np.tile([1.0, 2.0, 3.0], (2, 1))  # identical samples: no MC spread
    q = np.tile([0.0, 0.0, 0.0, 1.0], (2, 1))
    log_var = np.log([[0.01, 0.01, 0.04, 1e-4, 1e-4, 1e-4], [0.03, 0.01, 0.04, 3e-4, 1e-4, 1e-4]])
    est = estimate_from_samples(
        t, q, CovarianceScale(2.0, 10.0), min_position_variance=1e-6, min_rotation_variance=0.0,
        log_variances=log_var,
    )  # fmt: skip
    expected = np.diag([0.02 * 2, 0.01 * 2, 0.04 * 2, 2e-4 * 10, 1e-4 * 10, 1e-4 * 10]) + np.diag(
        [1e-6] * 3 + [0] * 3
    )
    np.testing.assert_allclose(est.covariance, expected, rtol=1e-12, atol=1e-18)
    with pytest.raises(ValueError, match=r"log_variances must have shape \(2, 6\)"):
        estimate_from_samples(t, q, log_variances=log_var[:, :3])


def test_per_group_scale_keeps_the_covariance_positive_definite_and_one_scale_is_unchanged() -> None:
    a = np.random.default_rng(2).normal(size=(6, 6))
    cov = a @ a.T
    scaled = CovarianceScale(4.0, 9.0).apply(cov)
    np.testing.assert_allclose(scaled[:3, :3], 4 * cov[:3, :3])
    np.testing.assert_allclose(scaled[3:, 3:], 9 * cov[3:, 3:])
    np.testing.assert_allclose(scaled[:3, 3:], 6 * cov[:3, 3:])  # the geometric mean
    assert np.linalg.eigvalsh(scaled).min() > 0
    np.testing.assert_array_equal(CovarianceScale.uniform(2.5).apply(cov), cov * 2.5)  # bit-identical


def test_fit_covariance_scales_matches_each_block_to_chi2_3() -> None:
    rng = np.random.default_rng(0)
    residuals = rng.normal(size=(4000, 6)) * np.array([0.3] * 3 + [0.05] * 3)
    covs = np.tile(np.diag([0.01] * 3 + [0.0025 / 4] * 3), (4000, 1, 1))  # 9x too small, 4x too large
    scale = fit_covariance_scales(residuals, covs)
    assert scale.position == pytest.approx(9.0, rel=0.06) and scale.rotation == pytest.approx(4.0, rel=0.06)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"position": 1.0}, "must map position and rotation"),
        ({"position": 1.0, "rotation": 1.0, "position_exponent": 2.0}, "needs both position_exponent and"),
        (
            {"position": 1.0, "rotation": 1.0, "position_exponent": 0.5, "position_reference_std": 0.1},
            r"position_exponent must be in \[1, 4\], got 0.5",
        ),
        ({"position": True, "rotation": 1.0}, "covariance_scale position must be a number, got True"),
        ("2", "covariance_scale must be a number or {position, rotation}, got '2'"),
        ({"position": -1.0, "rotation": 1.0}, "covariance_scale position must be a positive finite number"),
    ],
)
def test_scale_from_json_refuses_bad_values(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("{", r"\{")):
        CovarianceScale.from_json(value)


# ------------------------------------------------------------------------------- the bundle
def test_bundle_with_per_group_scale_and_variance_head_round_trips(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b", covariance_scale=CovarianceScale(2.1, 40.0), variance_head=True)
    text = yaml.safe_load(bundle.yaml_path.read_text())
    assert text["covariance_scale"] == {"position": 2.1, "rotation": 40.0}
    assert text["model"]["variance_head"] is True
    loaded = load_bundle(bundle.path)
    assert loaded.covariance_scale == CovarianceScale(2.1, 40.0) and loaded.variance_head
    assert [spec.name for spec in loaded.graph_outputs] == ["translation", "rotation", LOG_VARIANCE]


def test_a_shift_variance_bundle_has_the_log_variance_output_and_the_engine_returns_it(
    tmp_path: Path,
) -> None:
    bundle = make_bundle(tmp_path / "b", shift_variance=True)
    model = yaml.safe_load(bundle.yaml_path.read_text())["model"]
    assert model["shift_variance"] is True and "variance_head" not in model
    loaded = load_bundle(bundle.path)
    assert loaded.shift_variance and not loaded.variance_head and loaded.log_variance_output
    assert [spec.name for spec in loaded.graph_outputs] == ["translation", "rotation", LOG_VARIANCE]
    engine = load_engine(loaded, "onnxruntime", threads=1)
    masks = dropout_masks(3, loaded.hidden_dim, loaded.dropout, np.random.default_rng(0))
    out = engine.infer_outputs(preprocess(_images(0), loaded), masks)
    assert out.log_variance is not None and out.log_variance.shape == (3, 6)
    data = yaml.safe_load(bundle.yaml_path.read_text())
    data["model"]["shift_variance"] = "yes"
    bundle.yaml_path.write_text(yaml.safe_dump(data))
    with pytest.raises(BundleError, match=r"model\.shift_variance must be true or false, got 'yes'$"):
        load_bundle(bundle.path)


def test_old_bundles_keep_their_scalar_and_no_head(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b", covariance_scale=2.5)
    text = yaml.safe_load(bundle.yaml_path.read_text())
    assert text["covariance_scale"] == 2.5 and "variance_head" not in text["model"]
    loaded = load_bundle(bundle.path)
    assert loaded.covariance_scale == CovarianceScale.uniform(2.5) and not loaded.variance_head
    assert [spec.name for spec in loaded.graph_outputs] == ["translation", "rotation"]


def test_bad_per_group_scale_is_one_line(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b")
    data = yaml.safe_load(bundle.yaml_path.read_text())
    data["covariance_scale"] = {"position": 2.0, "rotation": 2e6}
    bundle.yaml_path.write_text(yaml.safe_dump(data))
    with pytest.raises(
        BundleError, match=r"covariance_scale.rotation must be in \(0.0, 1e\+06\], got 2000000.0$"
    ):
        load_bundle(bundle.path)


# ------------------------------------------------------------------------------ the engines
def _images(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (12, 16, 3), dtype=np.uint8) for _ in range(2)]


def test_onnxruntime_engine_returns_the_log_variance(tmp_path: Path) -> None:
    bundle = load_bundle(make_bundle(tmp_path / "b", variance_head=True).path)
    engine = load_engine(bundle, "onnxruntime", threads=1)
    x = preprocess(_images(0), bundle)
    for s in (1, 5):
        masks = dropout_masks(s, bundle.hidden_dim, bundle.dropout, np.random.default_rng(s))
        out = engine.infer_outputs(x, masks)
        t, q = expected_outputs(x, masks)
        np.testing.assert_allclose(out.translation, t, atol=1e-4)
        np.testing.assert_allclose(out.rotation, q, atol=1e-6)
        assert out.log_variance is not None and out.log_variance.dtype == np.float64
        np.testing.assert_allclose(out.log_variance, expected_log_variance(masks), atol=1e-5)
    plain = load_engine(load_bundle(make_bundle(tmp_path / "p").path), "onnxruntime", threads=1)
    assert plain.infer_outputs(x, plain.deterministic_mask()).log_variance is None


@pytest.mark.parametrize(("said", "graph"), [(True, False), (False, True)])
def test_a_graph_that_disagrees_with_bundle_yaml_is_refused(tmp_path: Path, said: bool, graph: bool) -> None:
    bundle = load_bundle(make_bundle(tmp_path / "b", variance_head=said, graph_variance=graph).path)
    with pytest.raises(
        EngineError, match="the bundle contract wants images, dropout_mask -> translation, rotation"
    ):
        load_engine(bundle, "onnxruntime", threads=1)


def test_localizer_and_pipeline_add_the_predicted_variance(tmp_path: Path) -> None:
    scale = CovarianceScale(2.0, 30.0)
    bundle = load_bundle(make_bundle(tmp_path / "b", covariance_scale=scale, variance_head=True).path)
    images = _images(3)
    estimate = Localizer(bundle, backend="onnxruntime", mc_samples=6, seed=3, threads=1).localize(images)
    masks = dropout_masks(6, bundle.hidden_dim, bundle.dropout, np.random.default_rng(3))
    engine = load_engine(bundle, "onnxruntime", threads=1)
    out = engine.infer_outputs(preprocess(images, bundle), masks)
    t, q = out.translation, out.rotation
    expected = estimate_from_samples(t, q, scale, log_variances=out.log_variance)
    np.testing.assert_allclose(estimate.covariance, expected.covariance, rtol=1e-9, atol=1e-15)
    mc_only = estimate_from_samples(t, q, scale)
    assert estimate.position_std > mc_only.position_std  # the aleatoric part is there

    results: list[LocalizationResult] = []
    assert bundle.log_variance_output  # the pipeline's variance_head
    pipe = bundle_pipeline(bundle, engine, results, mc_samples=6, seed=3)
    publish_one_set(pipe, images, results)
    np.testing.assert_allclose(results[0].estimate.covariance, expected.covariance, rtol=1e-9, atol=1e-15)
    pipe.reconfigure(covariance_scale=3.0)  # a number overrides both groups
    assert pipe.config.covariance_scale == CovarianceScale.uniform(3.0)
    with pytest.raises(ValueError, match="variance_head come"):
        pipe.reconfigure(variance_head=False)


def test_training_a_model_of_heads_minimizes_the_mean_of_their_losses() -> None:
    torch.manual_seed(0)
    common = {
        "backbone": "small_cnn", "num_cameras": 2, "hidden_dim": 16, "small_cnn_width": 8,
        "rotation": "rot6d", "variance_head": True,
    }  # fmt: skip
    two = build_model(ModelConfig(**common, heads=2))  # type: ignore[arg-type]
    one = build_model(ModelConfig(**common))  # type: ignore[arg-type]
    one.load_state_dict(two.state_dict())
    two.eval(), one.eval()  # BatchNorm by running statistics: both see the same features
    loss = build_loss("homoscedastic")
    images = torch.rand(3, 2, 3, 32, 32)
    t = torch.randn(3, 1, 3)
    q = torch.nn.functional.normalize(torch.randn(3, 1, 4), dim=-1)
    masks = two.random_masks(3, 2)  # training gives every set one row per head
    parts = Objective(two, loss)(images, masks, t, q)
    per_head = []
    for head, units in enumerate([slice(0, 8), slice(8, 16)]):
        kept = torch.zeros_like(masks[:, :1])
        kept[..., units] = masks[:, head : head + 1, units]
        per_head.append(Objective(one, loss)(images, kept, t, q))
    for key in ("total", "variance_nll"):
        torch.testing.assert_close(parts[key], (per_head[0][key] + per_head[1][key]) / 2)
    assert abs(float((per_head[0]["total"] - per_head[1]["total"]).detach())) > 1e-6


def test_variance_feature_gradient_without_a_variance_head_is_refused() -> None:
    with pytest.raises(ValueError, match=r"variance_feature_gradient .* needs variance_head"):
        ModelConfig(**SMALL, variance_feature_gradient=0.5)
