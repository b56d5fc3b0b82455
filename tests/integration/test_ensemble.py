"""Deep ensembles of seeds as one model: `eval-checkpoint --ensemble`, `export --ensemble`, the
engines and the node (docs/bundle-format.md, docs/training.md).

Three one-epoch small_cnn runs of one config (seeds 0, 1, 2) on a tiny mono dataset. Checked:
row s of the ensemble is member s mod K's MC sample with mask row s (PyTorch, ONNX Runtime and
the PyTorch reference engine, against each member's own bundle); the evaluation's deterministic
pose is the members' mean; export takes the ensemble's evaluation; every wrong combination is
refused in one line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import yaml

from pose_regressor import pose
from pose_regressor.bundle import MAX_ENSEMBLE_MEMBERS, BundleError, load_bundle
from pose_regressor.engines.onnxruntime_engine import OnnxRuntimeEngine
from pose_regressor.localizer import Localizer
from pose_regressor.rig import preset_rig
from pose_regressor.uncertainty import dropout_masks, estimate_from_samples
from pose_regressor_training.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from pose_regressor_training.cli import main
from pose_regressor_training.data.dataset import PoseDataset
from pose_regressor_training.data.sources import load_dataset
from pose_regressor_training.distance_prior import distance_prior_of
from pose_regressor_training.ensemble import EnsembleError, configure_heads, ensemble_samples, load_ensemble
from pose_regressor_training.export import export_bundle
from pose_regressor_training.onnx_checks import FORBIDDEN_OPS, TENSORRT_OPS, op_types
from pose_regressor_training.predict import predict
from pose_regressor_training.synth.generate import SynthConfig, render_dataset
from pose_regressor_training.torch_engine import TorchEngine
from pose_regressor_training.train import fit
from pose_regressor_training.train_config import load_train_config
from tests.integration.node_client import NodeProcess, RosPeer
from tests.integration.torch_fixtures import (
    one_torch_thread,  # noqa: F401 (an autouse fixture: it must be in the module)
    spread_outputs,
)

TINY = [
    "model.backbone=small_cnn",
    "model.small_cnn_width=8",
    "model.hidden_dim=16",
    "model.image_width=32",
    "model.image_height=24",
    "model.variance_head=true",
    "optim.batch_size=8",
    "optim.epochs=1",
    "tensorboard=false",
    "threads=1",
]
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """(dataset root, [best.pt of seeds 0, 1, 2]): one-epoch runs whose weights are then drawn
    anew per seed, so that the members' poses vary by metres with the images and between members
    (a one-epoch tiny model predicts about the mean pose for every image)."""
    base = tmp_path_factory.mktemp("ensemble")
    data = base / "data"
    render_dataset(SynthConfig(out=data, rig=preset_rig("mono", 64, 48), frames=60, seed=2, progress=False))
    checkpoints = []
    for seed in range(3):
        run = base / f"s{seed}"
        fit(load_train_config(None, [f"data.root={data}", *TINY, f"seed={seed}"]), run, progress=False)
        _draw_weights(run / "best.pt", seed)
        checkpoints.append(run / "best.pt")
    return data, checkpoints


def _draw_weights(path: Path, seed: int) -> None:
    trained = load_checkpoint(path)
    model = model_from_checkpoint(trained)
    torch.manual_seed(seed)
    spread_outputs(model, torch.rand(8, 1, 3, 24, 32))
    save_checkpoint(path, replace(trained, model=model.state_dict()))


def test_row_s_is_member_s_mod_k_with_mask_row_s(runs: tuple[Path, list[Path]]) -> None:
    model, _ = load_ensemble(runs[1], "dropout")
    members = [model_from_checkpoint(load_checkpoint(path)) for path in runs[1]]
    assert model.config.log_variance_output is False and model.config.dropout == members[0].config.dropout
    images = torch.rand(2, 1, 3, 24, 32)
    masks = model.random_masks(1, 7, torch.Generator().manual_seed(3))
    t, q, log_variance = model.inference_outputs(images, masks)
    assert log_variance is None and t.shape == (2, 7, 3) and q.shape == (2, 7, 4)
    for row in range(7):
        t_member, q_member, _ = members[row % 3].inference_outputs(images, masks[:, row : row + 1])
        torch.testing.assert_close(t[:, row : row + 1], t_member, rtol=0, atol=1e-6)
        torch.testing.assert_close(q[:, row : row + 1], q_member, rtol=0, atol=1e-6)
    assert [ensemble_samples(3, n) for n in (0, 2, 3, 32)] == [3, 3, 3, 30]


def test_eval_then_export_an_ensemble_and_run_it_on_every_engine(
    runs: tuple[Path, list[Path]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, (first, *others) = runs
    eval_args = [
        "eval-checkpoint",
        "--checkpoint",
        str(first),
        "--no-baseline",
        "--ensemble",
        *map(str, others),
        "--ensemble-covariance",
        "dropout",
    ]
    assert main(eval_args) == 0
    assert "eval: the ensemble of 3 models, 10 MC samples each" in capsys.readouterr().out
    metrics = json.loads((first.parent / "eval_ensemble3_test" / "metrics.json").read_text())
    assert metrics["ensemble"] == [str(path.resolve()) for path in runs[1]]
    assert metrics["mc_samples"] == 30 and "covariance_scale" in metrics
    # The ensemble's deterministic pose is the mean of its members' (each with a mask of ones).
    test = PoseDataset(load_dataset("folder", data, "test"), (32, 24), preload=False)
    member_t = np.concatenate(
        [
            predict(model_from_checkpoint(load_checkpoint(path)), test, torch.device("cpu"))[0]
            for path in runs[1]
        ],
        axis=1,
    )
    errors = np.linalg.norm(member_t.mean(axis=1) - test.frame_list.translations(), axis=1)
    assert metrics["deterministic"]["median_translation_m"] == pytest.approx(
        float(np.median(errors)), abs=1e-6
    )

    out = tmp_path / "bundle"
    export_args = ["export", "--checkpoint", str(first), "--out", str(out), "--ensemble", *map(str, others)]
    assert main([*export_args, "--ensemble-covariance", "dropout"]) == 0
    printed = capsys.readouterr().out
    assert "ensemble of 3 models" in printed and "eval_ensemble3_test/metrics.json" in printed
    bundle = load_bundle(out)
    assert (bundle.ensemble_members, bundle.mc_samples, bundle.log_variance_output) == (3, 30, False)
    assert bundle.dropout == pytest.approx(0.2) and bundle.provenance["ensemble"] == metrics["ensemble"]
    assert yaml.safe_load((out / "bundle.yaml").read_text())["model"]["ensemble_members"] == 3
    ops = op_types(onnx.load(str(bundle.onnx_path)))
    assert ops <= TENSORRT_OPS and not ops & FORBIDDEN_OPS

    # Every row equals the member's own bundle on the same mask: ONNX Runtime and the PyTorch engine.
    singles = [OnnxRuntimeEngine(export_bundle(path, tmp_path / f"single{k}", mc_samples=4), threads=1)
               for k, path in enumerate(runs[1])]  # fmt: skip
    ort, reference = OnnxRuntimeEngine(bundle, threads=1), TorchEngine(bundle)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, bundle.images_shape, dtype=np.uint8)
    masks = dropout_masks(6, bundle.hidden_dim, bundle.dropout, rng)
    t, q = ort.infer(images, masks)
    t_pt, q_pt = reference.infer(images, masks)
    assert np.abs(t - t_pt).max() <= TOLERANCE and np.abs(q - q_pt).max() <= TOLERANCE
    for row in range(6):
        t_member, q_member = singles[row % 3].infer(images, masks[row : row + 1])
        assert (
            np.abs(t[row] - t_member[0]).max() <= TOLERANCE
            and np.abs(q[row] - q_member[0]).max() <= TOLERANCE
        )
    assert np.ptp(t[:3], axis=0).max() > 1e-3  # the members differ: the spread means something

    # The Localizer (eval-folder, bench) takes the bundle's 30 samples, and refuses a count that is
    # not a multiple of the members.
    estimate = Localizer(bundle, backend="onnxruntime", threads=1).localize(
        [np.zeros((48, 64, 3), dtype=np.uint8)]
    )
    assert estimate.samples == 30 and np.all(np.isfinite(estimate.covariance))
    with pytest.raises(ValueError, match="a multiple of 3"):
        Localizer(bundle, backend="onnxruntime", mc_samples=4)
    # an untouched quaternion output: unit rows
    np.testing.assert_allclose(np.linalg.norm(pose.canonical_hemisphere(q), axis=1), 1.0, atol=1e-5)


def test_wrong_ensembles_are_refused_in_one_line(
    runs: tuple[Path, list[Path]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, (first, second, third) = runs
    other = tmp_path / "other"
    fit(load_train_config(None, [f"data.root={data}", *TINY, "model.hidden_dim=8"]), other, progress=False)
    # the values in the order the message names the files: other's 8, then first's 16
    with pytest.raises(
        EnsembleError, match=r"other/best.pt is not the same model as .*model.hidden_dim: 8 vs 16"
    ):
        load_ensemble([first, other / "best.pt"])
    with pytest.raises(EnsembleError, match="one is named twice"):
        load_ensemble([first, first])
    unscaled = tmp_path / "unscaled.pt"
    trained = load_checkpoint(second)
    save_checkpoint(unscaled, replace(trained, dataset=replace(trained.dataset, length_unit="units")))
    with pytest.raises(
        EnsembleError, match=r"trained on positions in 'units', .* in 'm': an ensemble's members"
    ):
        load_ensemble([first, unscaled])
    out = str(tmp_path / "bundle")
    cases = [
        (["export", "--checkpoint", str(first), "--out", out, "--ensemble", str(other / "best.pt")],
         "is not the same model as"),
        (["export", "--checkpoint", str(first), "--out", out, "--ensemble", str(second), str(third),
          "--mc-samples", "32", "--ensemble-covariance", "dropout"],
         "mc_samples: 32 samples for an ensemble of 3 models; the samples go to"),
        (["eval-checkpoint", "--checkpoint", str(first), "--ensemble", str(first)], "one is named twice"),
    ]  # fmt: skip
    # a single model's evaluation does not calibrate an ensemble, nor the reverse
    single_metrics = tmp_path / "single.json"
    single_metrics.write_text(json.dumps({"checkpoint": str(first), "covariance_scale": 2.0}))
    ensemble_metrics = tmp_path / "ensemble.json"
    ensemble_metrics.write_text(
        json.dumps({"checkpoint": str(first), "covariance_scale": 2.0, "ensemble": ["x"]})
    )
    cases += [
        (["export", "--checkpoint", str(first), "--out", out, "--ensemble", str(second), str(third),
          "--metrics", str(single_metrics)], "evaluated one model, not the ensemble of 3 being exported"),
        (["export", "--checkpoint", str(first), "--out", out, "--metrics", str(ensemble_metrics)],
         "evaluated an ensemble, not the one model being exported"),
    ]  # fmt: skip
    _assert_refused(cases, Path(out), capsys)


def test_a_member_named_again_by_another_path_is_refused(
    runs: tuple[Path, list[Path]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = runs[1][0]
    link = tmp_path / "link.pt"
    link.symlink_to(first)
    out = tmp_path / "bundle"
    cases = []
    relative = Path(os.path.relpath(first))  # `first` is absolute: this is the other spelling
    for again in (link, relative, first.parent / ".." / first.parent.name / "best.pt"):
        message = (
            f"an ensemble's members must be different checkpoints (one is named twice: {again} is {first})"
        )
        cases += [
            (["eval-checkpoint", "--checkpoint", str(first), "--ensemble", str(again)], message),
            (["export", "--checkpoint", str(first), "--out", str(out), "--ensemble", str(again)], message),
        ]
    _assert_refused(cases, out, capsys)


def test_a_copy_of_a_member_is_refused(
    runs: tuple[Path, list[Path]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = runs[1][0]
    copy = tmp_path / "copy.pt"
    copy.write_bytes(first.read_bytes())
    out = tmp_path / "bundle"
    message = f"{copy} holds the same weights as {first}: an ensemble's members are different models"
    args = ["export", "--checkpoint", str(first), "--out", str(out), "--ensemble", str(copy)]
    _assert_refused([(args, message)], out, capsys)


def test_more_members_than_a_bundle_takes_are_refused_before_any_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """17 checkpoints that do not exist: the count is refused, so none was read."""
    missing = [str(tmp_path / f"run{k}" / "best.pt") for k in range(MAX_ENSEMBLE_MEMBERS + 1)]
    out = tmp_path / "bundle"
    message = "--ensemble names 16 checkpoints: an ensemble has at most 16 members, --checkpoint and 15 more"
    cases = [
        (["eval-checkpoint", "--checkpoint", missing[0], "--ensemble", *missing[1:]], message),
        (["export", "--checkpoint", missing[0], "--out", str(out), "--ensemble", *missing[1:]], message),
    ]
    _assert_refused(cases, out, capsys)
    with pytest.raises(EnsembleError, match=r"^an ensemble has 2 to 16 members, got 17$"):
        load_ensemble(missing)


def test_members_may_differ_in_how_they_were_trained_or_scored_alone(
    runs: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    """A member trained after its recipe changed `model.covariance` (as mono_small_cnn.yaml's did)
    or with another NLL computes the same graph: the ensemble takes it and gives the same rows."""
    first, second, third = runs[1]
    trained = load_checkpoint(second)
    changed = tmp_path / "second_rescored.pt"
    save_checkpoint(
        changed,
        replace(
            trained,
            model_config=replace(
                trained.model_config,
                covariance="heads",
                variance_nll="laplace",
                variance_feature_gradient=0.5,
            ),
        ),
    )
    for covariance in ("heads", "dropout"):
        model, _ = load_ensemble([first, changed, third], covariance)
        reference, _ = load_ensemble([first, second, third], covariance)
        images = torch.rand(2, 1, 3, 24, 32)
        masks = reference.random_masks(1, 6, torch.Generator().manual_seed(4))
        with torch.no_grad():
            t, q, log_variance = model.inference_outputs(images, masks)
            t_ref, q_ref, log_variance_ref = reference.inference_outputs(images, masks)
        torch.testing.assert_close(t, t_ref, rtol=0, atol=0)
        torch.testing.assert_close(q, q_ref, rtol=0, atol=0)
        if covariance == "dropout":
            assert log_variance is None and log_variance_ref is None
        else:
            assert log_variance is not None and log_variance_ref is not None
            torch.testing.assert_close(log_variance, log_variance_ref, rtol=0, atol=0)


def _assert_refused(
    cases: list[tuple[list[str], str]], out: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each command exits with 2 and one line holding its message, and writes no bundle."""
    for args, message in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
        assert not out.exists()


def test_bundle_yaml_ensemble_fields_are_checked(runs: tuple[Path, list[Path]], tmp_path: Path) -> None:
    bundle = export_bundle(
        runs[1][0], tmp_path / "bundle", ensemble=runs[1][1:], mc_samples=6, ensemble_covariance="dropout"
    )
    text = (bundle.path / "bundle.yaml").read_text()
    for bad, message in (
        ("ensemble_members: 1", "model.ensemble_members"),
        ("ensemble_members: 17", "model.ensemble_members"),
        ("ensemble_members: two", "model.ensemble_members"),
        ("ensemble_members: 4", "model.mc_samples: 6 samples for an ensemble of 4 models"),
    ):
        (bundle.path / "bundle.yaml").write_text(text.replace("ensemble_members: 3", bad))
        with pytest.raises(BundleError, match=message):
            load_bundle(bundle.path)
    (bundle.path / "bundle.yaml").write_text(text.replace("ensemble_members: 3", "ensemble_members: 2"))
    with pytest.raises(Exception, match="holds 3 model"):  # model.pt and bundle.yaml disagree
        TorchEngine(load_bundle(bundle.path))


@pytest.mark.parametrize(
    ("covariance", "logged"),
    [
        ("dropout", "30 MC samples (the bundle's), 10 from each of 3 ensemble models"),
        (
            "heads",
            "3 MC samples (the bundle's), 1 from each of 3 ensemble models (no dropout: their variance",
        ),
    ],
)
def test_the_node_runs_an_ensemble_bundle(
    runs: tuple[Path, list[Path]], tmp_path: Path, ros_env: dict[str, str], covariance: str, logged: str
) -> None:
    """eval-node: the node over DDS publishes every set with the ensemble's covariance."""
    data, (first, *others) = runs
    bundle = export_bundle(first, tmp_path / "bundle", ensemble=others, ensemble_covariance=covariance)
    bag = tmp_path / "bag"
    assert main(["to-bag", "--data", str(data), "--split", "train", "--out", str(bag)]) == 0
    run = subprocess.run(
        [sys.executable, "-m", "pose_regressor.cli", "eval-node", "--bag", str(bag),
         "--bundle", str(bundle.path), "--out", str(tmp_path / "node")],
        env=ros_env, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    metrics = json.loads((tmp_path / "node" / "metrics.json").read_text())
    assert metrics["published"] >= 0.9 * metrics["expected_sets"] and np.isfinite(metrics["mean_nees"])
    log = (tmp_path / "node" / "node.log").read_text()
    assert logged in log


def test_ros2_param_set_refuses_a_sample_count_that_skips_members(
    runs: tuple[Path, list[Path]], tmp_path: Path, ros_env: dict[str, str]
) -> None:
    """`ros2 param set /localizer mc_samples 4` on an ensemble of 3 is refused in one line and the
    node keeps running; 6 is taken. Started with 4, it does not configure: one line, exit code 1."""
    bundle = export_bundle(
        runs[1][0], tmp_path / "bundle", ensemble=runs[1][1:], ensemble_covariance="dropout"
    )
    peer = RosPeer("ensemble_manager")
    node = NodeProcess(["--bundle", str(bundle.path)], ros_env)
    try:
        assert node.wait_for_line("active: localizing", 30.0), node.log()
        ok, reason = peer.set_parameter("/localizer", "mc_samples", 4)
        assert not ok and "4 samples for an ensemble of 3 models" in reason and "multiple of 3" in reason
        assert peer.set_parameter("/localizer", "mc_samples", 6) == (True, "")
        assert node.alive() and not node.lines("Traceback"), node.log()
    finally:
        node.stop()
        peer.close()
    # Started with 4 (autostart: configure at once), it stops with exit code 1 and one line.
    run = subprocess.run(
        [sys.executable, "-m", "pose_regressor.cli", "run", "--bundle", str(bundle.path),
         "--ros-args", "-p", "mc_samples:=4"],
        env=ros_env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert run.returncode == 1 and len(lines) == 1, run.stderr
    assert "cannot configure: mc_samples: 4 samples for an ensemble of 3 models" in lines[0], lines[0]


def test_heads_ensemble_rows_are_the_members_without_dropout_with_their_heads(
    runs: tuple[Path, list[Path]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--ensemble-covariance heads: masks of ones, S = K, row s is member s mod K's deterministic
    pose and variance head; eval, export, ONNX Runtime, the PyTorch engine and Localizer agree."""
    _, (first, *others) = runs
    model, _ = load_ensemble(runs[1], "heads")
    members = [model_from_checkpoint(load_checkpoint(path)) for path in runs[1]]
    assert model.config.dropout == 0.0 and model.config.log_variance_output
    masks = model.random_masks(1, 3, torch.Generator().manual_seed(3))
    assert torch.equal(masks, torch.ones(1, 3, model.mask_dim))
    images = torch.rand(2, 1, 3, 24, 32)
    t, q, log_variance = model.inference_outputs(images, masks)
    assert log_variance is not None and log_variance.shape == (2, 3, 6)
    for row, member in enumerate(members):
        t_k, q_k, lv_k = member.inference_outputs(images, masks[:, row : row + 1])
        assert lv_k is not None
        torch.testing.assert_close(t[:, row : row + 1], t_k, rtol=0, atol=1e-6)
        torch.testing.assert_close(q[:, row : row + 1], q_k, rtol=0, atol=1e-6)
        torch.testing.assert_close(log_variance[:, row : row + 1], lv_k, rtol=0, atol=1e-6)
    assert [ensemble_samples(3, n, "heads") for n in (0, 3, 32)] == [3, 3, 3]

    ensemble_args = ["--ensemble", *map(str, others), "--ensemble-covariance", "heads"]
    assert main(["eval-checkpoint", "--checkpoint", str(first), "--no-baseline", *ensemble_args]) == 0
    assert "each without dropout; their variance heads and disagreement" in capsys.readouterr().out
    metrics = json.loads((first.parent / "eval_ensemble3_heads_test" / "metrics.json").read_text())
    assert (metrics["mc_samples"], metrics["ensemble_covariance"]) == (3, "heads")
    assert "covariance_scale" in metrics and "uncertainty" in metrics

    out = tmp_path / "bundle"
    assert main(["export", "--checkpoint", str(first), "--out", str(out), *ensemble_args]) == 0
    printed = capsys.readouterr().out
    assert "eval_ensemble3_heads_test/metrics.json" in printed
    assert "the pose and variance head of member s, without dropout; S must be 3" in printed
    bundle = load_bundle(out)
    assert (bundle.ensemble_members, bundle.mc_samples, bundle.dropout) == (3, 3, 0.0)
    assert bundle.log_variance_output and bundle.provenance["ensemble_covariance"] == "heads"
    assert bundle.covariance_scale.to_json() == metrics["covariance_scale"]
    ops = op_types(onnx.load(str(bundle.onnx_path)))
    assert ops <= TENSORRT_OPS and not ops & FORBIDDEN_OPS

    ort, reference = OnnxRuntimeEngine(bundle, threads=1), TorchEngine(bundle)
    single = OnnxRuntimeEngine(export_bundle(runs[1][1], tmp_path / "single1", mc_samples=1), threads=1)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, bundle.images_shape, dtype=np.uint8)
    ones = dropout_masks(3, bundle.hidden_dim, bundle.dropout, rng)
    assert np.all(ones == 1.0)
    got, ref = ort.infer_outputs(frames, ones), reference.infer_outputs(frames, ones)
    assert got.log_variance is not None and ref.log_variance is not None
    for a, b in ((got.translation, ref.translation), (got.rotation, ref.rotation),
                 (got.log_variance, ref.log_variance)):  # fmt: skip
        assert np.abs(a - b).max() <= TOLERANCE
    member = single.infer_outputs(frames, ones[:1])
    assert member.log_variance is not None
    assert np.abs(got.translation[1] - member.translation[0]).max() <= TOLERANCE
    assert np.abs(got.log_variance[1] - member.log_variance[0]).max() <= TOLERANCE
    assert np.ptp(got.translation, axis=0).max() > 1e-3  # the members disagree

    # The Localizer's covariance: the members' disagreement plus their heads, scaled.
    localizer = Localizer(bundle, backend="onnxruntime", threads=1)
    estimate = localizer.localize([frames[0]])
    expected = estimate_from_samples(
        got.translation, got.rotation, bundle.covariance_scale, log_variances=got.log_variance
    )
    assert estimate.samples == 3
    np.testing.assert_allclose(estimate.covariance, expected.covariance, rtol=1e-6)
    # Without dropout every member gives one pose: S is K, as repeated rows would only shrink the
    # members' disagreement (the sample covariance divides by S - 1).
    with pytest.raises(ValueError, match="6 samples for an ensemble of 3 models without dropout"):
        Localizer(bundle, backend="onnxruntime", mc_samples=6)
    text = (out / "bundle.yaml").read_text()
    (out / "bundle.yaml").write_text(text.replace("mc_samples: 3", "mc_samples: 6"))
    with pytest.raises(BundleError, match="each gives one pose, so use 3"):
        load_bundle(out)


def test_heads_ensembles_are_refused_where_they_do_not_fit(
    runs: tuple[Path, list[Path]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, (first, second, third) = runs
    plain = tmp_path / "plain"
    fit(load_train_config(None, [f"data.root={data}", *TINY, "model.variance_head=false"]), plain,
        progress=False)  # fmt: skip
    plain_too = tmp_path / "plain_too"
    fit(load_train_config(None, [f"data.root={data}", *TINY, "model.variance_head=false", "seed=1"]),
        plain_too, progress=False)  # fmt: skip
    out = str(tmp_path / "bundle")
    dropout_metrics = tmp_path / "dropout.json"
    dropout_metrics.write_text(json.dumps({
        "checkpoint": str(first), "covariance_scale": 2.0,
        "ensemble": [str(p.resolve()) for p in (first, second, third)],
    }))  # fmt: skip
    heads = ["--ensemble-covariance", "heads"]
    # auto takes the heads where the members have them, else their dropout
    assert load_ensemble([plain / "best.pt", plain_too / "best.pt"])[0].covariance == "dropout"
    assert load_ensemble([first, second])[0].covariance == "heads"
    cases = [
        (["export", "--checkpoint", str(plain / "best.pt"), "--out", out, "--ensemble",
          str(plain_too / "best.pt"), *heads], "needs members with a variance head"),
        (["eval-checkpoint", "--checkpoint", str(plain / "best.pt"), *heads], "needs a variance head"),
        (["export", "--checkpoint", str(plain / "best.pt"), "--out", out, *heads], "needs a variance head"),
        (["export", "--checkpoint", str(first), "--out", out, "--ensemble", str(second), str(third), *heads,
          "--metrics", str(dropout_metrics)], "with --ensemble-covariance dropout, not heads"),
        (["export", "--checkpoint", str(first), "--out", out, "--ensemble", str(second), str(third), *heads,
          "--mc-samples", "6"], "mc_samples: 6 samples for an ensemble of 3 models without dropout"),
    ]  # fmt: skip
    _assert_refused(cases, Path(out), capsys)
    with pytest.raises(SystemExit) as exited:
        main(["eval-checkpoint", "--checkpoint", str(first), "--ensemble", str(second),
              "--ensemble-covariance", "spread"])  # fmt: skip
    assert exited.value.code == 2 and "invalid choice: 'spread'" in capsys.readouterr().err


def test_a_model_of_heads_evaluates_and_exports_as_an_ensemble_on_one_backbone(
    runs: tuple[Path, list[Path]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """model.heads: K heads on one backbone are the K rows of one graph, as an ensemble's members."""
    data, (first, *_) = runs
    run = tmp_path / "heads"
    fit(load_train_config(None, [f"data.root={data}", *TINY, "model.heads=2"]), run, progress=False)
    _draw_weights(run / "best.pt", 5)
    checkpoint = run / "best.pt"

    assert main(["eval-checkpoint", "--checkpoint", str(checkpoint), "--no-baseline"]) == 0
    assert "eval: a model of 2 heads on one backbone, without dropout" in capsys.readouterr().out
    metrics = json.loads((run / "eval_heads_test" / "metrics.json").read_text())
    assert (metrics["heads"], metrics["ensemble_covariance"], metrics["mc_samples"]) == (2, "heads", 2)
    # The deterministic pose is the heads' mean; the MC mean of S = K rows of ones is the same.
    model = model_from_checkpoint(load_checkpoint(checkpoint))
    assert configure_heads(model, "auto") == "heads" and model.config.dropout == 0  # masks of ones
    test = PoseDataset(load_dataset("folder", data, "test"), (32, 24), preload=False)
    t_heads = predict(model, test, torch.device("cpu"), mc_samples=2)[0]
    assert np.ptp(t_heads, axis=1).max() > 1e-3  # the heads disagree
    errors = np.linalg.norm(t_heads.mean(axis=1) - test.frame_list.translations(), axis=1)
    assert metrics["deterministic"]["median_translation_m"] == pytest.approx(
        float(np.median(errors)), abs=1e-6
    )
    assert metrics["median_translation_m"] == pytest.approx(float(np.median(errors)), abs=1e-6)

    out = tmp_path / "bundle"
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "ensemble of 2 heads on one backbone" in printed and "eval_heads_test/metrics.json" in printed
    bundle = load_bundle(out)
    assert (bundle.ensemble_members, bundle.mc_samples, bundle.dropout) == (2, 2, 0.0)
    assert bundle.provenance["heads"] == 2 and bundle.provenance["ensemble_covariance"] == "heads"
    assert bundle.covariance_scale.to_json() == metrics["covariance_scale"]
    ort, reference = OnnxRuntimeEngine(bundle, threads=1), TorchEngine(bundle)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, bundle.images_shape, dtype=np.uint8)
    ones = dropout_masks(2, bundle.hidden_dim, bundle.dropout, rng)
    got, ref = ort.infer_outputs(frames, ones), reference.infer_outputs(frames, ones)
    assert got.log_variance is not None and ref.log_variance is not None
    for a, b in ((got.translation, ref.translation), (got.log_variance, ref.log_variance)):
        assert np.abs(a - b).max() <= TOLERANCE
    assert np.ptp(got.translation, axis=0).max() > 1e-3
    with pytest.raises(ValueError, match="4 samples for an ensemble of 2 models without dropout"):
        Localizer(bundle, backend="onnxruntime", mc_samples=4)

    # With their MC dropout instead: S a multiple of K, the dropout evaluation in eval_test/.
    args = ["--ensemble-covariance", "dropout"]
    assert main(["eval-checkpoint", "--checkpoint", str(checkpoint), "--no-baseline", *args]) == 0
    assert "eval: a model of 2 heads, 16 MC samples each" in capsys.readouterr().out
    dropout_metrics = json.loads((run / "eval_test" / "metrics.json").read_text())
    assert (dropout_metrics["mc_samples"], dropout_metrics["ensemble_covariance"]) == (32, "dropout")
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(out), "--overwrite", *args]) == 0
    # the fixture's val split is one trajectory: export ships that calibration, and says so
    assert "calibration was fitted on one stretch of the path (20 frames)" in capsys.readouterr().err
    bundle = load_bundle(out)
    assert (bundle.ensemble_members, bundle.mc_samples, bundle.dropout) == (2, 32, pytest.approx(0.2))
    cases = [
        (["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "b2"), *args,
          "--metrics", str(run / "eval_heads_test" / "metrics.json")],
         "evaluated the model of 2 heads with --ensemble-covariance heads, not dropout"),
        (["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "b2"), "--mc-samples", "3"],
         "mc_samples: 3 samples for an ensemble of 2 models without dropout"),
        (["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "b2"), "--ensemble", str(first)],
         "have 2 heads each (model.heads), an ensemble on one backbone already"),
    ]  # fmt: skip
    _assert_refused(cases, tmp_path / "b2", capsys)


def test_one_model_without_dropout_takes_its_covariance_from_its_variance_head(
    runs: tuple[Path, list[Path]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--ensemble-covariance heads for one model of one head: S = 1, the deterministic pose, and the
    covariance of its variance head alone (an ensemble of one)."""
    first = runs[1][0]
    heads = ["--ensemble-covariance", "heads"]
    assert main(["eval-checkpoint", "--checkpoint", str(first), "--no-baseline", *heads]) == 0
    assert "eval: the model without dropout, one row" in capsys.readouterr().out
    metrics = json.loads((first.parent / "eval_heads_test" / "metrics.json").read_text())
    assert (metrics["mc_samples"], metrics["ensemble_covariance"]) == (1, "heads")
    assert metrics["median_translation_m"] == metrics["deterministic"]["median_translation_m"]
    assert "covariance_scale" in metrics and set(metrics["covariance_variants"]) == {
        "mc_log_variance_per_group"
    }
    assert np.isfinite(metrics["uncertainty"]["spearman_position_std_vs_error"])

    out = tmp_path / "bundle"
    assert main(["export", "--checkpoint", str(first), "--out", str(out), *heads]) == 0
    assert "without dropout: one row, the deterministic pose" in capsys.readouterr().out
    bundle = load_bundle(out)
    assert (bundle.ensemble_members, bundle.mc_samples, bundle.dropout) == (1, 1, 0.0)
    assert bundle.covariance_scale.to_json() == metrics["covariance_scale"]
    frames = np.random.default_rng(0).integers(0, 256, bundle.images_shape, dtype=np.uint8)
    got = OnnxRuntimeEngine(bundle, threads=1).infer_outputs(
        frames, np.ones((1, bundle.hidden_dim), np.float32)
    )
    assert got.log_variance is not None
    estimate = Localizer(bundle, backend="onnxruntime", threads=1).localize([frames[0]])
    expected = estimate_from_samples(
        got.translation, got.rotation, bundle.covariance_scale, log_variances=got.log_variance
    )
    assert estimate.samples == 1
    np.testing.assert_allclose(estimate.covariance, expected.covariance, rtol=1e-6)
    np.testing.assert_allclose(estimate.translation, got.translation[0], atol=1e-6)
    # the default stays MC dropout for one head, and its scale is not the one fitted without dropout
    heads_metrics = str(first.parent / "eval_heads_test" / "metrics.json")
    b2 = str(tmp_path / "b2")
    refused = [(["export", "--checkpoint", str(first), "--out", b2, "--metrics", heads_metrics],
                "evaluated the model with --ensemble-covariance heads, not dropout")]  # fmt: skip
    _assert_refused(refused, tmp_path / "b2", capsys)
    assert main(["export", "--checkpoint", str(first), "--out", str(out), "--overwrite"]) == 0
    assert load_bundle(out).dropout == pytest.approx(0.2) and load_bundle(out).mc_samples == 32


def test_a_recipe_of_model_covariance_heads_is_scored_without_dropout_by_default(
    runs: tuple[Path, list[Path]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """model.covariance: heads (synth_quad.yaml's since 2026-12-06) makes `auto` mean heads for one
    model: eval-checkpoint and export without --ensemble-covariance give what `heads` gives, and MC
    dropout stays one flag away."""
    trained = load_checkpoint(runs[1][0])
    checkpoint = tmp_path / "run" / "best.pt"
    checkpoint.parent.mkdir()
    recipe = replace(trained.model_config, covariance="heads")
    save_checkpoint(checkpoint, replace(trained, model_config=recipe))
    assert main(["eval-checkpoint", "--checkpoint", str(checkpoint), "--no-baseline"]) == 0
    assert "eval: the model without dropout, one row" in capsys.readouterr().out
    metrics = json.loads((checkpoint.parent / "eval_heads_test" / "metrics.json").read_text())
    assert (metrics["mc_samples"], metrics["ensemble_covariance"]) == (1, "heads")
    assert metrics["median_translation_m"] == metrics["deterministic"]["median_translation_m"]

    out = tmp_path / "bundle"
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(out)]) == 0
    bundle = load_bundle(out)
    assert (bundle.ensemble_members, bundle.mc_samples, bundle.dropout) == (1, 1, 0.0)
    assert bundle.covariance_scale.to_json() == metrics["covariance_scale"]

    mc = ["--ensemble-covariance", "dropout", "--mc-samples", "4"]
    assert main(["eval-checkpoint", "--checkpoint", str(checkpoint), "--no-baseline", *mc]) == 0
    metrics = json.loads((checkpoint.parent / "eval_test" / "metrics.json").read_text())
    assert (metrics["mc_samples"], metrics["ensemble_covariance"]) == (4, "dropout")
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(out), "--overwrite", *mc[:2]]) == 0
    assert (load_bundle(out).dropout, load_bundle(out).mc_samples) == (pytest.approx(0.2), 32)


def test_the_guides_small_set_ensemble_of_mono_small_cnn_seeds(
    runs: tuple[Path, list[Path]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/training.md's phone-video guide, steps 4-8 as an ensemble: three seeds of
    mono_small_cnn.yaml, evaluated with --ensemble and no other flag (`auto` is `heads`: the config
    has a variance head), calibrated on val and test together and exported with that calibration,
    give a bundle of three members without dropout that ONNX Runtime runs."""
    data = runs[0]
    small = ["model.image_width=32", "model.image_height=24", "model.small_cnn_width=8", "optim.epochs=1"]
    members = []
    for seed in range(3):
        out = tmp_path / f"seed{seed}"
        fit_args = ["fit", "--config", "training/configs/mono_small_cnn.yaml", "--out", str(out), "--quiet"]
        assert main([*fit_args, f"data.root={data}", *small, "tensorboard=false", f"seed={seed}"]) == 0
        members.append(str(out / "best.pt"))
    assert (
        main(["eval-checkpoint", "--checkpoint", members[0], "--ensemble", *members[1:], "--split", "test"])
        == 0
    )
    honest = json.loads((tmp_path / "seed0" / "eval_ensemble3_heads_test" / "metrics.json").read_text())
    assert (honest["ensemble_covariance"], honest["mc_samples"]) == ("heads", 3)
    assert honest["uncertainty"]["covariance_scale_fitted_on"] == "val"
    ship = tmp_path / "eval_ship"
    step6 = ["--split", "test", "--calib-split", "val,test", "--out", str(ship)]
    assert main(["eval-checkpoint", "--checkpoint", members[0], "--ensemble", *members[1:], *step6]) == 0
    metrics = json.loads((ship / "metrics.json").read_text())
    assert metrics["uncertainty"]["covariance_scale_fitted_on"] == "val,test"
    assert metrics["uncertainty"]["calibration_in_sample"] is True
    bundle_dir = tmp_path / "bundle"
    step7 = ["--metrics", str(ship / "metrics.json"), "--out", str(bundle_dir)]
    assert main(["export", "--checkpoint", members[0], "--ensemble", *members[1:], *step7]) == 0
    assert "eval_ship/metrics.json" in capsys.readouterr().out
    bundle = load_bundle(bundle_dir)
    assert bundle.provenance["eval_metrics"]["covariance_scale_fitted_on"] == "val,test"
    # the config's distance prior travels with it; a bundle without it would not fit that calibration
    assert bundle.distance_prior is not None and bundle.distance_prior.k == 1.0
    other = [
        "--metrics",
        str(ship / "metrics.json"),
        "--out",
        str(tmp_path / "other"),
        "--distance-variance",
        "0",
    ]
    assert main(["export", "--checkpoint", members[0], "--ensemble", *members[1:], *other]) == 2
    assert "evaluated with a distance variance of 1, the bundle would have 0" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()
    assert (bundle.ensemble_members, bundle.mc_samples, bundle.dropout) == (3, 3, 0.0)
    assert bundle.log_variance_output and bundle.covariance_scale.to_json() == metrics["covariance_scale"]
    estimate = Localizer(bundle, backend="onnxruntime", threads=1).localize([np.zeros((48, 64, 3), np.uint8)])
    assert estimate.samples == 3 and np.all(np.linalg.eigvalsh(estimate.covariance) > 0)


def test_the_distance_prior_reads_the_training_positions_or_says_why_it_cannot(
    runs: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    """`distance_prior_of`: the train split's positions where fit read them, else from --data (a
    copy moved elsewhere); neither: one line that names both and the way out."""
    data, checkpoints = runs
    trained = load_checkpoint(checkpoints[0])
    assert distance_prior_of(trained) is None  # the model's own k: 0
    prior = distance_prior_of(trained, k=1.0)
    train = load_dataset("folder", data, "train")
    assert prior is not None and prior.k == 1.0
    np.testing.assert_array_equal(prior.positions, train.translations())
    moved = replace(trained, dataset=replace(trained.dataset, root=str(tmp_path / "gone")))
    again = distance_prior_of(moved, data, k=1.0)  # the copy named by --data
    assert again is not None
    np.testing.assert_array_equal(again.positions, prior.positions)
    with pytest.raises(ValueError, match="no train split could be read") as caught:
        distance_prior_of(moved, tmp_path / "elsewhere", k=1.0)
    message = str(caught.value)
    assert "gone" in message and "elsewhere" in message and "--distance-variance 0" in message
    assert "\n" not in message
