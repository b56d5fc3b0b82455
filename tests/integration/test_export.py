"""Export end to end: a tiny trained checkpoint -> bundle; graph contract, TensorRT allow-list, parity.

Parity: ONNX Runtime (the exported graph) and TorchEngine (the PyTorch weights in model.pt)
agree within 1e-4 on the same images and masks; a mask of ones reproduces the PyTorch model in
eval mode and `evaluate_checkpoint`'s deterministic metrics on the test split.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch

from pose_regressor import pose
from pose_regressor.bundle import ModelBundle, UncertainFlag, load_bundle, preprocess
from pose_regressor.engines import InferenceEngine, load_engine
from pose_regressor.engines.onnxruntime_engine import OnnxRuntimeEngine
from pose_regressor.rig import preset_rig
from pose_regressor.uncertainty import CovarianceScale, dropout_masks
from pose_regressor_training.checkpoint import (
    Checkpoint,
    DatasetInfo,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)
from pose_regressor_training.cli import main, parse_arguments
from pose_regressor_training.data.sources import load_dataset
from pose_regressor_training.evaluate import evaluate_checkpoint
from pose_regressor_training.export import (
    ExportError,
    covariance_scale_from_metrics,
    export_bundle,
    log_variance_agrees,
)
from pose_regressor_training.models import ModelConfig, build_model
from pose_regressor_training.models.model import images_to_unit_float
from pose_regressor_training.onnx_checks import (
    FORBIDDEN_OPS,
    TENSORRT_OPS,
    expected_signature,
    io_signature,
    op_types,
)
from pose_regressor_training.synth.generate import SynthConfig, render_dataset
from pose_regressor_training.torch_engine import TorchEngine
from pose_regressor_training.train import fit
from pose_regressor_training.train_config import load_train_config
from tests.integration.torch_fixtures import (
    one_torch_thread,  # noqa: F401 (an autouse fixture: it must be in the module)
    spread_outputs,
)

TINY = [
    "model.backbone=small_cnn",
    "model.small_cnn_width=8",
    "model.hidden_dim=32",
    "model.image_width=32",
    "model.image_height=24",
    "optim.batch_size=8",
    "optim.epochs=1",
    "tensorboard=false",
    "threads=1",
]
TOLERANCE = 1e-4  # metres and quaternion components


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(dataset root, checkpoint) of a one-epoch small_cnn run on a tiny quad-rig dataset."""
    base = tmp_path_factory.mktemp("export")
    data = base / "data"
    render_dataset(SynthConfig(out=data, rig=preset_rig("quad", 64, 48), frames=60, seed=1, progress=False))
    fit(load_train_config(None, [f"data.root={data}", *TINY]), base / "run", progress=False)
    return data, base / "run" / "best.pt"


@pytest.fixture(scope="module")
def bundle(trained: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> ModelBundle:
    return export_bundle(trained[1], tmp_path_factory.mktemp("bundle") / "quad")


@pytest.fixture(scope="module")
def engines(bundle: ModelBundle) -> tuple[InferenceEngine, InferenceEngine]:
    return load_engine(bundle, "onnxruntime", threads=1), load_engine(bundle, "torch")


def _camera_images(data: Path, split: str = "test") -> list[list[np.ndarray]]:
    """Each test frame's camera images as the robot gets them: full size, RGB."""
    frames = load_dataset("folder", data, split)
    return [
        [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in frame.image_paths]
        for frame in frames.frames
    ]


def _assert_static_tensorrt_graph(
    path: Path, cameras: int, hidden: int, width: int = 32, height: int = 24, variance_head: bool = False
) -> None:
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert {o.domain for o in proto.opset_import} <= {"", "ai.onnx"}
    assert max(o.version for o in proto.opset_import) >= 17
    assert io_signature(proto) == expected_signature(cameras, height, width, hidden, variance_head)
    ops = op_types(proto)
    assert ops <= TENSORRT_OPS, f"not in the TensorRT allow-list: {sorted(ops - TENSORRT_OPS)}"
    assert not ops & FORBIDDEN_OPS
    banned = {"Dropout", "Loop", "If", "Scan"}
    assert not [op for op in ops if op in banned or op.startswith(("Random", "Sequence"))]
    # Static everywhere but S: every dimension of every typed tensor is a number or "S".
    typed = [*proto.graph.input, *proto.graph.output, *proto.graph.value_info]
    for value in typed:
        for dim in value.type.tensor_type.shape.dim:
            assert dim.dim_value > 0 or dim.dim_param == "S", f"{value.name} has a dynamic dimension {dim}"


# ---------------------------------------------------------------------------------- the graph
def test_graph_is_checked_static_and_tensorrt_friendly(bundle: ModelBundle) -> None:
    _assert_static_tensorrt_graph(bundle.onnx_path, cameras=4, hidden=32)
    assert bundle.onnx["opset"] == 17 and bundle.onnx["bytes"] == bundle.onnx_path.stat().st_size
    assert "S only" in bundle.onnx["dynamic_axes"]
    assert max(bundle.onnx["verified_max_abs_diff"].values()) <= TOLERANCE


def test_bundle_yaml_describes_cameras_model_and_training(
    bundle: ModelBundle, trained: tuple[Path, Path]
) -> None:
    data, checkpoint = trained
    assert bundle == load_bundle(bundle.path)
    assert bundle.camera_names == ["front", "left", "back", "right"]
    assert [(c.topic, c.width, c.height) for c in bundle.cameras][1] == ("/left/image_raw", 64, 48)
    assert (bundle.input_width, bundle.input_height, bundle.fusion, bundle.dof) == (32, 24, "input", 6)
    assert (bundle.hidden_dim, bundle.mc_samples, bundle.dropout) == (32, 32, 0.2)
    assert (
        bundle.covariance_scale == CovarianceScale(1.0, 1.0)
        and bundle.provenance["covariance_scale_source"] == "default"
    )
    provenance = bundle.provenance
    assert provenance["checkpoint"] == str(checkpoint.resolve())
    assert provenance["dataset"]["root"] == str(data)
    assert provenance["config"]["model"]["backbone"] == "small_cnn"
    assert set(provenance["best_metrics"]) >= {"median_translation_m", "median_rotation_deg"}
    assert provenance["torch"] == str(torch.__version__) and provenance["onnx"] == onnx.__version__
    assert bundle.torch_path.is_file() and bundle.engines_dir.is_dir()


# ------------------------------------------------------------------------------------- parity
@pytest.mark.parametrize("samples", [1, 8, 32])
def test_onnxruntime_and_torch_engines_agree(
    engines: tuple[InferenceEngine, InferenceEngine], trained: tuple[Path, Path], samples: int
) -> None:
    ort_engine, torch_engine = engines
    bundle = ort_engine.bundle
    rng = np.random.default_rng(samples)
    real = _camera_images(trained[0])[:2]
    inputs = [preprocess(images, bundle) for images in real]
    inputs.append(rng.integers(0, 256, bundle.images_shape, dtype=np.uint8))
    for images in inputs:
        for _ in range(3):
            masks = dropout_masks(samples, bundle.hidden_dim, bundle.dropout, rng)
            t_ort, q_ort = ort_engine.infer(images, masks)
            t_pt, q_pt = torch_engine.infer(images, masks)
            assert np.abs(t_ort - t_pt).max() <= TOLERANCE
            assert np.abs(q_ort - q_pt).max() <= TOLERANCE
            np.testing.assert_allclose(np.linalg.norm(q_ort, axis=1), 1.0, atol=1e-5)
            assert (q_ort[:, 3] >= 0).all()


def test_mask_of_ones_is_the_pytorch_model_in_eval_mode(
    engines: tuple[InferenceEngine, InferenceEngine], trained: tuple[Path, Path]
) -> None:
    ort_engine = engines[0]
    model = model_from_checkpoint(load_checkpoint(trained[1]))
    for images in _camera_images(trained[0])[:4]:
        x = preprocess(images, ort_engine.bundle)
        with torch.no_grad():
            out = model(images_to_unit_float(torch.from_numpy(x)[None]))
        t, q = ort_engine.infer(x, ort_engine.deterministic_mask())
        np.testing.assert_allclose(t, out.t[0].double().numpy(), atol=TOLERANCE, rtol=0)
        np.testing.assert_allclose(q, out.q[0].double().numpy(), atol=TOLERANCE, rtol=0)


def test_deterministic_predictions_reproduce_evaluate(
    engines: tuple[InferenceEngine, InferenceEngine], trained: tuple[Path, Path]
) -> None:
    data, checkpoint = trained
    ort_engine = engines[0]
    reference = evaluate_checkpoint(checkpoint, split="test", mc_samples=0, device_name="cpu").metrics
    frames = load_dataset("folder", data, "test").frames
    t_pred, q_pred = [], []
    for images in _camera_images(data):
        t, q = ort_engine.infer(preprocess(images, ort_engine.bundle), ort_engine.deterministic_mask())
        t_pred.append(t[0])
        q_pred.append(q[0])
    t_err = pose.translation_error(np.stack([f.translation for f in frames]), np.stack(t_pred))
    r_err = pose.rotation_error_deg(np.stack([f.quat_xyzw for f in frames]), np.stack(q_pred))
    deterministic = reference["deterministic"]
    assert deterministic["frames"] == len(frames) > 0
    assert abs(float(np.median(t_err)) - deterministic["median_translation_m"]) <= TOLERANCE
    assert abs(float(np.median(r_err)) - deterministic["median_rotation_deg"]) <= TOLERANCE
    assert abs(float(np.mean(t_err)) - deterministic["mean_translation_m"]) <= TOLERANCE


# --------------------------------------------------------------------------- CLI and overwrite
def test_cli_exports_refuses_to_overwrite_and_replaces(
    trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bundle"
    args = ["export", "--checkpoint", str(trained[1]), "--out", str(out), "--mc-samples", "4"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert f"export: wrote {out}" in captured.out and "ONNX Runtime vs PyTorch" in captured.out
    assert "warning: no covariance scale" in captured.err
    assert main(args) == 2
    assert f"pose-train export: error: {out} exists; pass --overwrite" in capsys.readouterr().err
    metrics = tmp_path / "metrics.json"
    # what eval writes: the scale, and the flag thresholds it suggests from the calibration split
    suggested = {"max_position_std": 0.17, "max_rotation_std": 0.036}
    held_out = {"blocks": 6, "folds": 6, "mean_nees": 7.1, "inside_95": 0.88, "mean_nees_per_fold": [1.0] * 6}
    uncertainty = {
        "uncertain_flag": {"suggested_parameters": suggested},
        "covariance_scale_fitted_on": "val,test",
        "calibration_held_out": held_out,
        "calibration_frames": 60,
        "calibration_stretches": 6,
    }
    metrics.write_text(
        json.dumps(
            {
                "checkpoint": "elsewhere/best.pt",
                "split": "test",
                "covariance_scale": 2.5,
                "uncertainty": uncertainty,
            }
        )
    )
    assert main([*args, "--overwrite", "--metrics", str(metrics), "--opset", "18"]) == 0
    printed, warned = capsys.readouterr()
    assert "calibration" not in warned  # six stretches, held-out NEES 7.1: nothing to say
    assert "covariance scale 2.5 (from" in printed
    assert "uncertain flag: position std > 0.17 m or rotation std > 2.06 deg (suggested" in printed
    replaced = load_bundle(out)
    assert replaced.covariance_scale == CovarianceScale.uniform(2.5)
    assert replaced.uncertain_flag == UncertainFlag(0.17, 0.036)
    assert replaced.provenance["eval_metrics"]["uncertain_flag"] == suggested
    assert (replaced.mc_samples, replaced.onnx["opset"]) == (4, 18)
    assert replaced.provenance["covariance_scale_source"] == str(metrics)
    assert replaced.provenance["eval_metrics"]["split"] == "test"
    # the bundle says what its calibration was fitted on and how it held on stretches left out
    assert replaced.provenance["eval_metrics"]["covariance_scale_fitted_on"] == "val,test"
    assert replaced.provenance["eval_metrics"]["calibration_held_out"] == {
        k: held_out[k] for k in ("blocks", "folds", "mean_nees", "inside_95")
    }
    assert replaced.provenance["eval_metrics"]["calibration_stretches"] == 6
    # a calibration fitted on one stretch of the path ships with a warning that says what to do
    del uncertainty["calibration_held_out"]
    uncertainty.update(calibration_frames=25, calibration_stretches=1)
    metrics.write_text(json.dumps({"split": "test", "covariance_scale": 2.5, "uncertainty": uncertainty}))
    assert main([*args, "--overwrite", "--metrics", str(metrics)]) == 0
    warned = capsys.readouterr().err
    assert "warning: the covariance calibration was fitted on one stretch of the path (25 frames)" in warned
    assert "--calib-split val,test" in warned
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "metrics.json"]  # no staging left
    assert main(["export", "--checkpoint", str(tmp_path / "none.pt"), "--out", str(tmp_path / "x")]) == 2
    assert "none.pt does not exist" in capsys.readouterr().err
    assert (
        main(["export", "--checkpoint", str(trained[1]), "--out", str(tmp_path / "y"), "--opset", "13"]) == 2
    )
    assert "opset must be in 17..20, got 13" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()


def _tiny_checkpoint(path: Path, epoch: int = 0, seed: int = 0) -> Path:
    """An untrained one-camera small_cnn checkpoint at `path` (its folder made): enough to export."""
    torch.manual_seed(seed)
    config = ModelConfig(backbone="small_cnn", num_cameras=1, image_width=32, image_height=24,
                         hidden_dim=16, small_cnn_width=8)  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    rig = preset_rig("mono", 64, 48)
    weights = build_model(config).state_dict()
    save_checkpoint(path, Checkpoint(config, weights, rig, dataset=DatasetInfo(root="none"), epoch=epoch))
    return path


def _export(checkpoint: Path, out: Path, *extra: str) -> int:
    return main(["export", "--checkpoint", str(checkpoint), "--out", str(out), "--mc-samples", "2", *extra])


def test_an_out_that_holds_the_checkpoint_is_refused_and_the_run_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    checkpoint = _tiny_checkpoint(run / "best.pt")
    (run / "last.pt").write_bytes(checkpoint.read_bytes())
    (run / "history.json").write_text("{}")
    (tmp_path / "run_link").symlink_to(run)
    kept = {p.name: p.read_bytes() for p in run.iterdir()}
    # the run folder itself, a folder above it, the run by a link, the run by `..`
    for out in (run, tmp_path, tmp_path / "run_link", run / "engines" / ".."):
        assert _export(checkpoint, out, "--overwrite") == 2, out
        err = capsys.readouterr().err
        assert err.startswith("pose-train export: error: --out ") and err.count("\n") == 1, err
        assert f"holds the checkpoint {checkpoint}: the bundle would replace it" in err
    assert {p.name: p.read_bytes() for p in run.iterdir()} == kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "run_link"]  # no staging left


def test_overwrite_leaves_an_existing_folder_that_is_not_a_bundle_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = _tiny_checkpoint(tmp_path / "run" / "best.pt")
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "dataset.yaml").write_text("name: x\n")
    (data / "images" / "0.png").write_bytes(b"png")
    assert _export(checkpoint, data, "--overwrite") == 2
    assert capsys.readouterr().err == (
        f"pose-train export: error: --out {data} exists and is not a bundle (no bundle.yaml); "
        "it is left alone: name another --out\n"
    )
    assert sorted(str(p.relative_to(data)) for p in data.rglob("*")) == [
        "dataset.yaml",
        "images",
        "images/0.png",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "run"]


def test_overwrite_fills_an_empty_folder(tmp_path: Path) -> None:
    checkpoint = _tiny_checkpoint(tmp_path / "run" / "best.pt")
    empty = tmp_path / "bundle"
    empty.mkdir()
    assert _export(checkpoint, empty, "--overwrite") == 0
    assert load_bundle(empty).mc_samples == 2


def test_metrics_of_another_checkpoint_are_used_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = _tiny_checkpoint(tmp_path / "run0" / "best.pt")
    other = _tiny_checkpoint(tmp_path / "run1" / "best.pt", seed=1)
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"checkpoint": str(other), "covariance_scale": 2.0}))
    assert _export(checkpoint, tmp_path / "bundle", "--metrics", str(metrics)) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if str(metrics) in line]
    assert warned == [
        f"pose-train export: warning: --metrics {metrics} evaluated {other}, not {checkpoint}: its "
        "covariance calibration may be another model's (evaluate this checkpoint with pose-train "
        "eval-checkpoint)"
    ]
    assert load_bundle(tmp_path / "bundle").covariance_scale == CovarianceScale.uniform(2.0)


def test_suggested_flag_thresholds_the_node_refuses_are_named_not_dropped_silently(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = _tiny_checkpoint(tmp_path / "run0" / "best.pt")
    metrics = tmp_path / "metrics.json"
    suggested = {"max_position_std": 0.4, "max_rotation_std": 4.2}  # an untrained model's rotation std
    uncertainty = {"uncertain_flag": {"suggested_parameters": suggested}}
    metrics.write_text(json.dumps({"covariance_scale": 2.0, "uncertainty": uncertainty}))
    assert _export(checkpoint, tmp_path / "bundle", "--metrics", str(metrics)) == 0
    printed, warned = capsys.readouterr()
    assert (
        "pose-train export: warning: the evaluation's suggested uncertain-flag thresholds are not carried "
        "(uncertain_flag.max_rotation_std must be in (0.0, 3.14159"
    ) in warned
    assert "the node flags at its generic 1 m / 0.35 rad unless its max_position_std" in warned
    assert "uncertain flag:" not in printed
    assert load_bundle(tmp_path / "bundle").uncertain_flag is None


def test_metrics_of_this_checkpoint_by_another_path_give_no_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = _tiny_checkpoint(tmp_path / "run0" / "best.pt")
    (tmp_path / "run_link").symlink_to(checkpoint.parent)
    metrics = tmp_path / "metrics.json"
    metrics.write_text(
        json.dumps({"checkpoint": str(tmp_path / "run_link" / "best.pt"), "covariance_scale": 2.0})
    )
    assert _export(checkpoint, tmp_path / "bundle", "--metrics", str(metrics)) == 0
    assert "another model's" not in capsys.readouterr().err


def test_metrics_of_another_epoch_are_used_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = _tiny_checkpoint(tmp_path / "run" / "best.pt", epoch=3)
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"checkpoint": str(checkpoint), "epoch": 2, "covariance_scale": 2.0}))
    assert _export(checkpoint, tmp_path / "bundle", "--metrics", str(metrics)) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if str(metrics) in line]
    assert warned == [
        f"pose-train export: warning: --metrics {metrics} evaluated epoch 2, {checkpoint} is epoch 3: "
        "its covariance calibration may be another model's (evaluate this checkpoint with pose-train "
        "eval-checkpoint)"
    ]


def test_a_checkpoint_folder_is_named_as_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _tiny_checkpoint(tmp_path / "run" / "best.pt").parent
    with pytest.raises(SystemExit) as exited:
        main(["export", "--checkpoint", str(run), "--out", str(tmp_path / "bundle")])
    assert exited.value.code == 2
    assert capsys.readouterr().err == (
        f"pose-train export: error: argument --checkpoint: {run} is a folder, not a checkpoint file "
        f"(did you mean {run / 'best.pt'}?) (see pose-train export --help)\n"
    )


def test_a_metrics_folder_is_named_as_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = _tiny_checkpoint(tmp_path / "run" / "best.pt")
    folder = checkpoint.parent / "eval_test"
    folder.mkdir()
    (folder / "metrics.json").write_text("{}")
    with pytest.raises(SystemExit) as exited:
        main(
            [
                "export",
                "--checkpoint",
                str(checkpoint),
                "--out",
                str(tmp_path / "b"),
                "--metrics",
                str(folder),
            ]
        )
    assert exited.value.code == 2
    assert capsys.readouterr().err == (
        f"pose-train export: error: argument --metrics: {folder} is a folder, not a metrics file "
        f"(did you mean {folder / 'metrics.json'}?) (see pose-train export --help)\n"
    )
    with pytest.raises(ExportError, match=r"^metrics file .*eval_test is a folder, not a file$"):
        covariance_scale_from_metrics(checkpoint, folder)


def test_a_calibration_split_that_is_no_split_is_refused_by_the_parser(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = str(tmp_path / "best.pt")
    evaluate = ["eval-checkpoint", "--checkpoint", checkpoint, "--calib-split"]
    for given in ("val,test", "", "train"):
        assert parse_arguments([*evaluate, given]).calib_split == given
    with pytest.raises(SystemExit) as exited:
        main([*evaluate, "vla"])
    assert exited.value.code == 2
    assert capsys.readouterr().err == (
        "pose-train eval-checkpoint: error: argument --calib-split: 'vla' is not a split: name train, "
        "val or test, several comma-separated (val,test), or '' for the evaluated split "
        "(see pose-train eval-checkpoint --help)\n"
    )


def test_covariance_scale_sources(tmp_path: Path) -> None:
    checkpoint = tmp_path / "run" / "best.pt"
    eval_dir = checkpoint.parent / "eval_test"
    eval_dir.mkdir(parents=True)
    one = CovarianceScale.uniform(1.0)
    assert covariance_scale_from_metrics(checkpoint, None) == (one, "default", {})
    metrics = {"checkpoint": str(checkpoint), "split": "test", "covariance_scale": 3.0, "frames": 9}
    (eval_dir / "metrics.json").write_text(json.dumps(metrics))
    scale, source, summary = covariance_scale_from_metrics(checkpoint, None)
    assert (scale, source, summary["frames"]) == (
        CovarianceScale.uniform(3.0),
        str(eval_dir / "metrics.json"),
        9,
    )
    # what eval writes now: one scale per axis group
    per_group = {**metrics, "covariance_scale": {"position": 2.0, "rotation": 40.0}}
    (eval_dir / "metrics.json").write_text(json.dumps(per_group))
    assert covariance_scale_from_metrics(checkpoint, None)[0] == CovarianceScale(2.0, 40.0)
    (eval_dir / "metrics.json").write_text(json.dumps(metrics))
    # eval_test/ of the run's other checkpoint is not this checkpoint's calibration.
    assert covariance_scale_from_metrics(checkpoint.with_name("last.pt"), None)[:2] == (one, "default")
    with pytest.raises(FileNotFoundError, match=r"metrics file .* does not exist"):
        covariance_scale_from_metrics(checkpoint, tmp_path / "missing.json")
    (tmp_path / "no_scale.json").write_text(json.dumps({"median_translation_m": 1.0}))
    with pytest.raises(
        ExportError, match="has no usable covariance_scale: covariance_scale must be a finite"
    ):
        covariance_scale_from_metrics(checkpoint, tmp_path / "no_scale.json")
    # An undertrained model's fitted scale beyond the bound is named, not silently dropped.
    (eval_dir / "metrics.json").write_text(json.dumps({**metrics, "covariance_scale": 1.5e7}))
    scale, source, _ = covariance_scale_from_metrics(checkpoint, None)
    assert scale == one
    assert (
        source
        == f"default ({eval_dir / 'metrics.json'}: covariance_scale must be in (0.0, 1e+06], got 15000000.0)"
    )
    # what eval writes for a val split of 200 frames or more: each group's exponent and reference
    shaped = CovarianceScale(0.23, 0.26, 2.0, 2.8, 0.24, 0.04)
    (eval_dir / "metrics.json").write_text(json.dumps({**metrics, "covariance_scale": shaped.as_mapping()}))
    assert covariance_scale_from_metrics(checkpoint, None)[0] == shaped
    bad = {**shaped.as_mapping(), "rotation_exponent": 9.0}
    (eval_dir / "metrics.json").write_text(json.dumps({**metrics, "covariance_scale": bad}))
    assert covariance_scale_from_metrics(checkpoint, None)[:2] == (
        one,
        f"default ({eval_dir / 'metrics.json'}: "
        "covariance_scale.rotation_exponent must be in [1.0, 4.0], got 9.0)",
    )
    # Flag thresholds: kept when eval suggested valid ones; left out (the node's own apply) otherwise,
    # and why is recorded for export's warning (dropped without a word before).
    for suggested, refused in [
        ({"max_position_std": 0.2, "max_rotation_std": 0.05}, None),
        ({"max_position_std": 0.2, "max_rotation_std": 4.0}, "max_rotation_std must be in (0.0, 3.14"),
        ({"max_position_std": None, "max_rotation_std": 0.05}, "max_position_std must be a finite number"),
        ("0.2", "uncertain_flag must be a mapping of exactly max_position_std and max_rotation_std"),
        (None, None),  # none suggested: nothing to say
    ]:
        uncertainty = {"uncertain_flag": {"suggested_parameters": suggested}}
        (eval_dir / "metrics.json").write_text(json.dumps({**metrics, "uncertainty": uncertainty}))
        summary = covariance_scale_from_metrics(checkpoint, None)[2]
        assert ("uncertain_flag" in summary) is (suggested is not None and refused is None), suggested
        if "uncertain_flag" in summary:
            assert summary["uncertain_flag"] == suggested
        assert (refused is None) is ("uncertain_flag_refused" not in summary)
        if refused is not None:
            assert refused in summary["uncertain_flag_refused"]
    # an error_correlation block of fewer keys (a hand edit, an older eval): a KeyError traceback before
    correlation = {"suggested_covariance_inflation": 16}
    (eval_dir / "metrics.json").write_text(
        json.dumps({**metrics, "uncertainty": {"error_correlation": correlation}})
    )
    assert covariance_scale_from_metrics(checkpoint, None)[2]["error_correlation"] == {
        "frames": None,
        "seconds": None,
        "truncated": None,
        "suggested_covariance_inflation": 16,
    }


# ------------------------------------------------------------------------------ other backbones
@pytest.mark.parametrize(
    ("backbone", "fusion", "rotation", "dof", "size"),
    [
        ("resnet18", "late", "logq", 6, (32, 24)),
        ("mobilenet_v3_small", "mosaic", "quaternion", 3, (32, 24)),
        ("small_cnn", "input", "quaternion", 6, (40, 30)),  # 3x2 final map: pooling windows overlap
        ("small_cnn", "input", "rot6d", 6, (32, 24)),
        ("small_cnn", "input", "rot6d+track_tta", 6, (32, 24)),  # the shift averaging in the graph
        ("small_cnn", "input", "rot6d+track_tta+variance_head", 6, (32, 24)),  # + log_variance [S, 6]
        ("small_cnn", "input", "rot6d+track_tta+shift_variance", 6, (32, 24)),  # the shifts' spread
        ("small_cnn", "input", "rot6d+track_tta+variance_head+shift_variance", 6, (32, 24)),
        # a two-layer variance head (model.variance_head_hidden)
        ("small_cnn", "input", "rot6d+track_tta+variance_head_mlp+shift_variance", 6, (32, 24)),
        # a second variance head fitted on cross-fitted errors (model.error_head): log-sum-exp in the graph
        ("small_cnn", "input", "rot6d+track_tta+variance_head_mlp+shift_variance+error_head", 6, (32, 24)),
        # dropout on the backbone embedding too (model.embedding_dropout): a wider mask
        ("small_cnn", "input", "rot6d+track_tta+variance_head+embedding_dropout", 6, (32, 24)),
        # two heads on one backbone (model.heads), with their MC dropout: row s is head s mod 2
        ("small_cnn", "input", "rot6d+track_tta+heads", 6, (32, 24)),
    ],
)
def test_other_backbones_export_and_agree(
    tmp_path: Path, backbone: str, fusion: str, rotation: str, dof: int, size: tuple[int, int]
) -> None:
    torch.manual_seed(0)
    rotation, *flags = rotation.split("+")
    tta, shifts = "track_tta" in flags, "shift_variance" in flags
    head_hidden = 8 if "variance_head_mlp" in flags else 0
    head = "variance_head" in flags or head_hidden > 0
    variance = head or shifts  # the graph has the log_variance output
    config = ModelConfig(
        backbone=backbone, fusion=fusion, num_cameras=2, image_width=size[0], image_height=size[1],
        hidden_dim=16, rotation=rotation, dof=dof, small_cnn_width=8,
        track_tta=tta, track_yaw_step=math.pi if tta else 0.0, variance_head=head, shift_variance=shifts,
        variance_head_hidden=head_hidden, embedding_dropout="embedding_dropout" in flags,
        heads=2 if "heads" in flags else 1, error_head="error_head" in flags, error_head_hidden=8,
    )  # fmt: skip
    model = build_model(config)
    mask_dim = 16 + (model.feature_dim if config.embedding_dropout else 0)
    model.set_translation_stats(torch.tensor([1.0, -2.0, 0.5]), torch.tensor([2.0, 1.0, 0.3]))
    spread_outputs(model, torch.rand(8, 2, 3, size[1], size[0]))
    checkpoint = tmp_path / "untrained.pt"
    rig = preset_rig("stereo", 64, 48)
    save_checkpoint(checkpoint, Checkpoint(config, model.state_dict(), rig, dataset=DatasetInfo(root="none")))
    bundle = export_bundle(checkpoint, tmp_path / "bundle", mc_samples=8)
    _assert_static_tensorrt_graph(bundle.onnx_path, 2, mask_dim, *size, variance_head=variance)
    assert bundle.hidden_dim == mask_dim
    assert bundle.camera_names == ["left", "right"] and (bundle.fusion, bundle.dof) == (fusion, dof)
    assert (bundle.variance_head, bundle.shift_variance) == (head, shifts)
    assert bundle.log_variance_output == variance
    ort_engine, torch_engine = OnnxRuntimeEngine(bundle, threads=1), TorchEngine(bundle)
    rng = np.random.default_rng(1)
    deterministic = []
    for samples in (1, 8, 1):
        images = rng.integers(0, 256, bundle.images_shape, dtype=np.uint8)
        masks = dropout_masks(samples, mask_dim, bundle.dropout, rng)
        ort_out, pt_out = ort_engine.infer_outputs(images, masks), torch_engine.infer_outputs(images, masks)
        t_ort, q_ort, t_pt, q_pt = ort_out.translation, ort_out.rotation, pt_out.translation, pt_out.rotation
        assert np.abs(t_ort - t_pt).max() <= TOLERANCE and np.abs(q_ort - q_pt).max() <= TOLERANCE
        if variance:
            assert ort_out.log_variance is not None and pt_out.log_variance is not None
            assert ort_out.log_variance.shape == (samples, 6)
            assert np.all(log_variance_agrees(ort_out.log_variance, pt_out.log_variance))
            assert np.ptp(ort_out.log_variance) > 0.01  # not stuck at the clamp or a constant
        else:
            assert ort_out.log_variance is None and pt_out.log_variance is None
        deterministic.append(ort_engine.infer(images, ort_engine.deterministic_mask())[0][0, :2])
    assert np.abs(deterministic[0] - deterministic[-1]).max() > 0.01  # outputs depend on the images
    if dof == 3:  # yaw only: z at the training mean, roll = pitch = 0
        np.testing.assert_allclose(t_ort[:, 2], 0.5, atol=1e-6)
        np.testing.assert_allclose(q_ort[:, :2], 0.0, atol=1e-7)


def test_log_variance_agrees_compares_standard_deviations() -> None:
    # What the CI machine's ONNX Runtime gave for a 0.59 mm std: 0.011 off in log-variance, 3.3 um
    # off in std, far inside the pose's own 1e-4 m tolerance.
    assert log_variance_agrees(np.array([-14.883863]), np.array([-14.872708])).all()
    # A std of 1 m that is 1 cm off is not the same covariance, nor is 1 mm against 3 mm.
    assert not log_variance_agrees(np.array([2 * np.log(1.01)]), np.array([0.0])).any()
    assert not log_variance_agrees(np.array([2 * np.log(3e-3)]), np.array([2 * np.log(1e-3)])).any()
    # Large stds: a log-variance 1e-3 off (std 0.05% off) agrees, 1e-2 off (0.5%) does not.
    assert log_variance_agrees(np.array([10.001]), np.array([10.0])).all()
    assert not log_variance_agrees(np.array([10.01]), np.array([10.0])).any()


def test_the_evaluations_error_correlation_reaches_the_bundle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = _tiny_checkpoint(tmp_path / "run" / "best.pt")
    found = {"frames": 15.2, "seconds": 1.52, "lag1": 0.93, "truncated": True}
    metrics = tmp_path / "metrics.json"
    metrics.write_text(
        json.dumps(
            {
                "checkpoint": str(checkpoint),
                "covariance_scale": 2.0,
                "uncertainty": {"error_correlation": {**found, "suggested_covariance_inflation": 15.2}},
            }
        )
    )
    assert _export(checkpoint, tmp_path / "bundle", "--metrics", str(metrics)) == 0
    assert (
        "  successive poses err alike over at least 1.52 s (the evaluation's error_correlation): an EKF "
        "fusing every pose at the evaluated rate needs covariance_inflation 15.2 or more"
    ) in capsys.readouterr().out.splitlines()
    shipped = load_bundle(tmp_path / "bundle").provenance["eval_metrics"]["error_correlation"]
    assert shipped == {
        "frames": 15.2,
        "seconds": 1.52,
        "truncated": True,
        "suggested_covariance_inflation": 15.2,
    }
