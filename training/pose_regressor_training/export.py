"""`pose-train export`: a checkpoint -> a model bundle (model.onnx + bundle.yaml + model.pt).

The graph (see `pose_regressor.bundle` for the contract):

    images        uint8   [T, H, W, 3]  RGB, cameras in bundle order, already resized by
                                        `pose_regressor.bundle.preprocess`
    dropout_mask  float32 [S, D]        ones: deterministic; Bernoulli(1-p)/(1-p): MC samples
    -> translation float32 [S, 3]  metres, map frame (T_map_base)
       rotation    float32 [S, 4]  xyzw, unit, w >= 0

Exporter: the TorchScript-based `torch.onnx.export(..., dynamo=False)`. It traces the model into
a static graph with the requested opset (17 by default: what TensorRT 8.5+ parses) and folds
BatchNorm into the convolutions; the torch.export-based exporter (`dynamo=True`) gives an
equivalent graph here but always emits opset >= 18 and takes ~7x longer. Every dimension is
static except S (the first axis of `dropout_mask`, `translation` and `rotation`): the backbone
runs once per call whatever S is, and one graph serves the deterministic pass (S = 1) and MC
dropout (S = `mc_samples`, recorded in bundle.yaml as the TensorRT optimization-profile S).

After export the graph is checked (`onnx.checker` with full shape inference, the I/O contract,
the TensorRT operator allow-list of `onnx_checks`) and run with ONNX Runtime against the PyTorch
model on random images and masks; any failure is an `ExportError` and leaves nothing behind.
The bundle is assembled in a temporary sibling directory and renamed into place.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import math
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from pose_regressor.bounds import is_number
from pose_regressor.bundle import (
    DROPOUT_MASK,
    DYNAMIC_AXIS,
    GRAPH_INPUTS,
    GRAPH_OUTPUTS,
    IMAGES,
    MAX_MC_SAMPLES,
    ONNX_FILE,
    PREPROCESSING,
    SCHEMA_VERSION,
    TORCH_FILE,
    YAML_FILE,
    BundleCamera,
    BundleError,
    ModelBundle,
    UncertainFlag,
    ensemble_samples_problem,
    graph_outputs,
    load_bundle,
    parse_covariance_scale,
    uncertain_flag,
    write_bundle,
    write_training_positions,
)
from pose_regressor.uncertainty import CovarianceScale, dropout_masks
from pose_regressor_training.checkpoint import (
    WRITE_ERRNOS,
    Checkpoint,
    load_checkpoint,
    model_from_checkpoint,
    write_torch_file,
)
from pose_regressor_training.distance_prior import distance_prior_of
from pose_regressor_training.ensemble import (
    EnsembleError,
    EnsembleRegressor,
    configure_heads,
    ensemble_samples,
    load_ensemble,
    scored_as_heads,
)
from pose_regressor_training.errors import TrainingError
from pose_regressor_training.models import ModelConfig, PoseRegressor
from pose_regressor_training.models.model import images_to_unit_float
from pose_regressor_training.onnx_checks import expected_signature, io_signature, tensorrt_violations
from pose_regressor_training.torch_engine import WEIGHTS_FORMAT
from pose_regressor_training.typed_config import to_mapping

INPUT_NAMES = tuple(spec.name for spec in GRAPH_INPUTS)
OUTPUT_NAMES = tuple(spec.name for spec in GRAPH_OUTPUTS)
DYNAMIC_AXES = {
    spec.name: {spec.shape.index(DYNAMIC_AXIS): DYNAMIC_AXIS}
    for spec in (*GRAPH_INPUTS, *graph_outputs(True))
    if DYNAMIC_AXIS in spec.shape
}
MIN_OPSET, MAX_OPSET = 17, 20
DEFAULT_MC_SAMPLES = 32
EXPORTER = "torch.onnx.export(dynamo=False) (TorchScript tracing)"
# ONNX Runtime vs PyTorch after export: |difference| <= ATOL + RTOL * |PyTorch value| (float32 keeps
# ~7 digits, so maps with coordinates of hundreds of metres need the relative part).
VERIFY_ATOL = 1e-4  # metres and quaternion components
VERIFY_RTOL = 1e-5
# The log-variance is compared as what the node uses, the standard deviation exp(lv / 2) in metres
# or radians: |std difference| <= VERIFY_ATOL + VERIFY_LOG_VARIANCE_ATOL / 2 * std, i.e. a
# log-variance 2e-3 off, or a std 1e-4 m off. The absolute part is needed because the track
# shifts' variance is a mean of squared differences of nearly equal float32 numbers: at a std of
# 0.6 mm, 3 um of rounding (the pose's own precision) is a log-variance 0.01 off.
VERIFY_LOG_VARIANCE_ATOL = 2e-3


def log_variance_agrees(ours: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Elementwise: do two log-variances give the same standard deviation, to VERIFY_ATOL in
    metres or radians plus VERIFY_LOG_VARIANCE_ATOL / 2 of its size?"""
    std_ours = np.exp(np.asarray(ours, np.float64) / 2)
    std_reference = np.exp(np.asarray(reference, np.float64) / 2)
    tolerance = VERIFY_ATOL + VERIFY_LOG_VARIANCE_ATOL / 2 * std_reference
    return np.asarray(np.abs(std_ours - std_reference) <= tolerance)


class ExportError(TrainingError):
    """The exported graph breaks the bundle contract or disagrees with the PyTorch model."""


class ExportWrapper(nn.Module):
    """The exported function: (images uint8 [T, H, W, 3], masks [S, D]) -> (t [S, 3], q [S, 4]),
    plus log_variance [S, 6] for a model with a variance head or shift_variance.

    Uses the model's own `inference_outputs` (eval mode; with `track_tta` the shift averaging is in
    the graph): the uint8 -> float / 255 conversion, the NHWC -> NCHW permute and the ImageNet normalization
    all happen in the graph.
    """

    def __init__(self, model: PoseRegressor | EnsembleRegressor) -> None:
        super().__init__()
        self.model = model.eval()

    def forward(self, images: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = images_to_unit_float(images.unsqueeze(0))  # [1, T, 3, H, W] in [0, 1]
        outputs = self.model.inference_outputs(x, masks.unsqueeze(0))  # [1, S, 3], [1, S, 4], [1, S, 6]
        return tuple(out[0] for out in outputs if out is not None)


def output_names(config: ModelConfig) -> list[str]:
    """The graph's output names for `config` (`pose_regressor.bundle.graph_outputs`)."""
    return [spec.name for spec in graph_outputs(config.log_variance_output)]


def _check_options(mc_samples: int, opset: int) -> None:
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ExportError(f"opset must be in {MIN_OPSET}..{MAX_OPSET}, got {opset}")
    if not 1 <= mc_samples <= MAX_MC_SAMPLES:
        raise ExportError(f"mc_samples must be in [1, {MAX_MC_SAMPLES}], got {mc_samples}")


def export_onnx(
    model: PoseRegressor | EnsembleRegressor, path: Path, mc_samples: int = 32, opset: int = 17
) -> onnx.ModelProto:
    """Export `model` to `path` and check it; returns the (shape-inferred) ModelProto that was saved."""
    _check_options(mc_samples, opset)
    config = model.config
    wrapper = ExportWrapper(model).eval()
    generator = torch.Generator().manual_seed(0)
    shape = (config.num_cameras, config.image_height, config.image_width, 3)
    images = torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)
    masks = torch.ones(mc_samples, model.mask_dim)
    with warnings.catch_warnings():
        # The legacy exporter announces its deprecation, and tracing warns wherever the model reads
        # a shape as a Python number (the camera-count check, static pooling windows): every traced
        # shape is static except S, which no such code reads, so those values are exact constants.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message="Converting a tensor to a Python")
        torch.onnx.export(
            wrapper,
            (images, masks),
            str(path),
            input_names=list(INPUT_NAMES),
            output_names=output_names(config),
            dynamic_axes={
                k: v for k, v in DYNAMIC_AXES.items() if k in (*INPUT_NAMES, *output_names(config))
            },
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    proto = onnx.load(str(path))
    try:
        onnx.checker.check_model(proto, full_check=True)
        # Data propagation resolves the shapes that Shape -> Expand chains compute (the dof-3 head),
        # so every intermediate and output dimension is a number or S.
        proto = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True, data_prop=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"the exported graph fails onnx.checker / shape inference: {exc}") from None
    onnx.save(proto, str(path))
    _check_contract(proto, config, model.mask_dim)
    return proto


def _check_contract(proto: onnx.ModelProto, config: ModelConfig, mask_dim: int) -> None:
    signature = io_signature(proto)
    expected = expected_signature(
        config.num_cameras,
        config.image_height,
        config.image_width,
        mask_dim,
        config.log_variance_output,
    )
    if signature != expected:
        raise ExportError(
            f"the exported graph's inputs/outputs are {signature}, the contract says {expected}"
        )
    bad = tensorrt_violations(proto)
    if bad:
        raise ExportError(
            f"the exported graph uses operators TensorRT cannot run or that are forbidden: {bad}"
        )


@torch.no_grad()
def verify_onnx(
    model: PoseRegressor | EnsembleRegressor, path: Path, trials: int = 4, samples: int = 8
) -> dict[str, float]:
    """Run the graph with ONNX Runtime (CPU) and the model in PyTorch on random images and masks
    (the first trial with a mask of ones); returns the largest absolute differences and raises an
    `ExportError` where one exceeds VERIFY_ATOL + VERIFY_RTOL * |PyTorch value|."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # a few tiny runs: threads would only contend
    session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    config = model.config
    wrapper = ExportWrapper(model).eval()
    rng = np.random.default_rng(0)
    worst = {"translation_m": 0.0, "rotation": 0.0}
    if config.log_variance_output:
        worst["log_variance"] = 0.0
    within = True
    for trial in range(trials):
        shape = (config.num_cameras, config.image_height, config.image_width, 3)
        images = rng.integers(0, 256, shape, dtype=np.uint8)
        if trial == 0:
            masks = np.ones((1, model.mask_dim), np.float32)
        else:
            masks = dropout_masks(samples, model.mask_dim, config.dropout, rng)
        ours_all = session.run(output_names(config), {IMAGES: images, DROPOUT_MASK: masks})
        references = wrapper(torch.from_numpy(images), torch.from_numpy(masks))
        for key, ours, reference_tensor in zip(worst, ours_all, references, strict=True):
            reference = reference_tensor.numpy()
            difference = np.abs(ours - reference)
            worst[key] = max(worst[key], float(difference.max()))
            if key == "log_variance":
                within &= bool(np.all(log_variance_agrees(ours, reference)))
            else:
                within &= bool(np.all(difference <= VERIFY_ATOL + VERIFY_RTOL * np.abs(reference)))
    if not within or not all(math.isfinite(v) for v in worst.values()):
        raise ExportError(
            f"ONNX Runtime and PyTorch disagree on the exported graph: largest differences {worst} "
            f"(tolerance {VERIFY_ATOL} + {VERIFY_RTOL} * |value|; "
            f"the log-variance as a std to {VERIFY_ATOL} + {VERIFY_LOG_VARIANCE_ATOL / 2} * std)"
        )
    return worst


# -------------------------------------------------------------------------------- calibration
def default_metrics_path(
    checkpoint: Path, ensemble_members: int = 1, ensemble_covariance: str = "dropout"
) -> Path:
    """Where `pose-train eval-checkpoint` writes the test metrics of a checkpoint (or of the ensemble
    of K members it leads; `ensemble_covariance` also for a model of heads) by default."""
    from pose_regressor_training.evaluate import evaluation_dir  # evaluate imports the data loaders

    return evaluation_dir(checkpoint, "test", ensemble_members, ensemble_covariance) / "metrics.json"


def _checked_scale(value: Any) -> tuple[CovarianceScale | None, str]:
    """(`value` as a calibration, "") when a bundle would accept it (every scale in
    (0, MAX_COVARIANCE_SCALE], exponents and reference stds in their ranges), else (None, why)."""
    try:
        return parse_covariance_scale(value), ""
    except BundleError as exc:
        return None, str(exc)


def covariance_scale_from_metrics(
    checkpoint: Path,
    metrics: Path | None,
    ensemble: Sequence[Path] = (),
    ensemble_covariance: str = "dropout",
    heads: int = 0,
) -> tuple[CovarianceScale, str, dict[str, Any]]:
    """(scale, source, eval summary). An explicit `metrics` file must hold `covariance_scale` (one
    number, or per axis group {position, rotation}) of the same model: one checkpoint, or the
    ensemble of the `ensemble` checkpoints (all members, `checkpoint` first) with the same
    `ensemble_covariance` (also for one model exported as its `heads` >= 1); the default
    eval_test/metrics.json (eval_ensemble<K>[_heads]_test/, eval_heads_test/) is used only when it
    names this checkpoint (ensemble); otherwise 1.0 ("default")."""
    default = CovarianceScale()
    path = (
        metrics
        if metrics is not None
        else default_metrics_path(checkpoint, max(len(ensemble), 1), ensemble_covariance)
    )
    if not path.is_file():
        if metrics is not None and metrics.is_dir():
            raise ExportError(f"metrics file {metrics} is a folder, not a file")
        if metrics is not None:
            raise FileNotFoundError(f"metrics file {metrics} does not exist")
        return default, "default", {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ExportError(f"cannot read metrics file {path}: {exc}") from None
    except RecursionError:
        raise ExportError(f"cannot read metrics file {path}: nested too deeply") from None
    scale = data.get("covariance_scale") if isinstance(data, dict) else None
    valid, problem = _checked_scale(scale)
    if valid is None:
        if metrics is not None:
            raise ExportError(
                f"{metrics} has no usable covariance_scale: {problem} "
                "(run pose-train eval-checkpoint with --mc-samples >= 2)"
            )
        # Said, not silent: a scale beyond the bound means the MC spread says nothing about the errors.
        if scale is None:
            return (
                default,
                f"default ({path} has no covariance_scale: evaluated with fewer than 2 MC samples?)",
                {},
            )
        return default, f"default ({path}: {problem})", {}
    assert isinstance(data, dict)
    from pose_regressor_training.evaluate import ensemble_record

    wanted = ensemble_record(ensemble) if ensemble else None
    if data.get("ensemble") != wanted:
        if metrics is None:
            return default, f"default ({path} evaluated another ensemble)", {}
        evaluated_what = "one model" if data.get("ensemble") is None else "an ensemble"
        exporting = "one model" if wanted is None else f"ensemble of {len(ensemble)}"
        raise ExportError(
            f"{metrics} evaluated {evaluated_what}, not the {exporting} being exported: its covariance "
            "scale does not fit (evaluate the same checkpoints with pose-train eval-checkpoint)"
        )
    evaluated_covariance = data.get("ensemble_covariance", "dropout")
    if evaluated_covariance != ensemble_covariance:
        if metrics is None:
            return default, f"default ({path} evaluated another ensemble covariance)", {}
        what = "the ensemble" if ensemble else "the model" + (f" of {heads} heads" if heads > 1 else "")
        raise ExportError(
            f"{metrics} evaluated {what} with --ensemble-covariance {evaluated_covariance}, not "
            f"{ensemble_covariance}: its covariance scale does not fit"
        )
    evaluated = data.get("checkpoint")
    if metrics is None and evaluated is not None and Path(evaluated).name != checkpoint.name:
        return default, "default", {}  # eval_test/ describes the run's other checkpoint (best.pt vs last.pt)
    summary_keys = (
        "checkpoint",
        "epoch",
        "split",
        "frames",
        "mc_samples",
        "median_translation_m",
        "median_rotation_deg",
    )
    summary = {k: data[k] for k in summary_keys if k in data}
    if isinstance(data.get("deterministic"), dict):
        summary["deterministic"] = data["deterministic"]
    uncertainty = data.get("uncertainty")
    if isinstance(uncertainty, dict) and isinstance(uncertainty.get("distance_prior"), dict):
        summary["distance_prior"] = uncertainty["distance_prior"]
    if isinstance(uncertainty, dict) and "covariance_scale_fitted_on" in uncertainty:
        summary["covariance_scale_fitted_on"] = uncertainty["covariance_scale_fitted_on"]
        for key in ("calibration_frames", "calibration_stretches"):  # what the scale was fitted on
            if key in uncertainty:
                summary[key] = uncertainty[key]
        held_out = uncertainty.get("calibration_held_out")
        if isinstance(held_out, dict):  # how the scale holds on stretches left out of its fit
            summary["calibration_held_out"] = {
                k: held_out[k] for k in ("blocks", "folds", "mean_nees", "inside_95") if k in held_out
            }
    flag, refused = suggested_uncertain_flag(uncertainty)
    if flag is not None:
        summary["uncertain_flag"] = flag.to_json()
    elif refused is not None:  # export warns: the node's own thresholds will apply
        summary["uncertain_flag_refused"] = refused
    correlation = uncertainty.get("error_correlation") if isinstance(uncertainty, dict) else None
    if isinstance(correlation, dict) and is_number(correlation.get("suggested_covariance_inflation")):
        # for the node's configure line: what an EKF that fuses every pose needs (docs/node.md);
        # the node checks the value itself (1 to 1e6) and names one it cannot use
        keys = ("frames", "seconds", "truncated", "suggested_covariance_inflation")
        summary["error_correlation"] = {k: correlation.get(k) for k in keys}
    return valid, str(path), summary


def metrics_mismatch(
    checkpoint: Path, epoch: int | None, metrics: Path, summary: dict[str, Any]
) -> str | None:
    """Why the explicit `metrics` (its eval summary, `covariance_scale_from_metrics`) looks like the
    evaluation of another checkpoint than `checkpoint` at `epoch`, or None: the checkpoint it
    records exists and is another file, or it records another epoch. A warning, not a refusal: a
    run folder that was moved or copied since leaves a recorded path that names nothing, or the
    same file again."""
    problems = []
    recorded = summary.get("checkpoint")
    if isinstance(recorded, str) and recorded:
        evaluated = Path(recorded)  # relative: to where eval-checkpoint ran, most likely here
        try:
            other = evaluated.is_file() and not evaluated.samefile(checkpoint)
        except OSError:
            other = False
        if other:
            problems.append(f"evaluated {recorded}, not {checkpoint}")
    recorded_epoch = summary.get("epoch")
    if isinstance(recorded_epoch, int) and epoch is not None and recorded_epoch != epoch:
        problems.append(f"evaluated epoch {recorded_epoch}, {checkpoint} is epoch {epoch}")
    if not problems:
        return None
    return (
        f"--metrics {metrics} {' and '.join(problems)}: its covariance calibration may be another "
        "model's (evaluate this checkpoint with pose-train eval-checkpoint)"
    )


def suggested_uncertain_flag(uncertainty: Any) -> tuple[UncertainFlag | None, str | None]:
    """The flag thresholds an eval suggested (`uncertainty.uncertain_flag.suggested_parameters` of
    its metrics.json), and why they were refused: (None, None) when it suggested none, (None,
    reason) when they are out of the node's range (a model whose rotation std exceeds pi rad)."""
    try:
        suggested = uncertainty["uncertain_flag"]["suggested_parameters"]
    except (KeyError, TypeError):
        return None, None
    if suggested is None:
        return None, None
    try:
        return uncertain_flag(suggested), None
    except BundleError as exc:
        return None, str(exc)


# ------------------------------------------------------------------------------------- bundle
def check_out_dir(out_dir: Path, checkpoints: Sequence[Path], overwrite: bool) -> None:
    """Refuses an `out_dir` that export may not create or replace, before anything is loaded: the
    folder of one of the `checkpoints` or a folder above it (the run's other files would go with
    it), or an existing folder that is not a bundle (no bundle.yaml) and not empty, such as a
    dataset folder, which `overwrite` would otherwise replace whole. A folder inside a run folder
    is fine: replacing it takes nothing of the run's but itself, and only when it is a bundle."""
    target = out_dir.resolve()
    for checkpoint in checkpoints:
        # the file a link points to, and the folder the link itself lies in: either would go
        for where in (checkpoint.resolve(), checkpoint.parent.resolve() / checkpoint.name):
            if where == target or target in where.parents:
                raise ExportError(
                    f"--out {out_dir} holds the checkpoint {checkpoint}: the bundle would replace it "
                    "and its run folder; name another --out"
                )
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise ExportError(f"--out {out_dir} is a file, not a bundle folder; it is left alone")
    if not (out_dir / YAML_FILE).is_file() and any(out_dir.iterdir()):
        raise ExportError(
            f"--out {out_dir} exists and is not a bundle (no {YAML_FILE}); it is left alone: "
            "name another --out"
        )
    if not overwrite:
        raise FileExistsError(f"{out_dir} exists; pass --overwrite to replace it")


def _replace_dir(staging: Path, out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists():
        if not overwrite:
            raise FileExistsError(f"{out_dir} exists; pass --overwrite to replace it")
        trash = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        out_dir.rename(trash / out_dir.name)
        try:
            staging.rename(out_dir)
        except OSError:
            (trash / out_dir.name).rename(out_dir)  # put the old bundle back
            raise
        finally:
            shutil.rmtree(trash, ignore_errors=True)
    else:
        staging.rename(out_dir)


def export_bundle(
    checkpoint: str | Path,
    out_dir: str | Path,
    mc_samples: int | None = None,
    opset: int = 17,
    overwrite: bool = False,
    metrics: str | Path | None = None,
    ensemble: Sequence[str | Path] = (),
    ensemble_covariance: str = "auto",
    distance_variance: float | None = None,
) -> ModelBundle:
    """Export a checkpoint into the bundle directory `out_dir`; returns the loaded `ModelBundle`.

    `mc_samples` is the bundle's default S (None: 32, or for an ensemble of K the largest multiple
    of K up to 32); `metrics` a `pose-train eval-checkpoint` metrics.json whose `covariance_scale`
    to use (default: the eval directory's metrics.json when it evaluated this checkpoint, or this
    ensemble, else 1.0, recorded as `covariance_scale_source: default`). `ensemble`: more
    checkpoints of the same model (other seeds) to export with `checkpoint` as one deep-ensemble
    graph (`pose_regressor_training.ensemble`), its covariance from `ensemble_covariance`
    (``heads``: no dropout, S = K by default; ``auto``: heads where the members have them). An
    existing `out_dir` is replaced only with `overwrite`, and only when it is a bundle or empty
    (`check_out_dir`).
    """
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    members = [checkpoint, *(Path(path) for path in ensemble)]
    _check_options(mc_samples if mc_samples is not None else 1, opset)
    check_out_dir(out_dir, members, overwrite)
    model: PoseRegressor | EnsembleRegressor
    if ensemble:
        try:
            model, checkpoints = load_ensemble(members, ensemble_covariance)
        except EnsembleError as exc:
            raise ExportError(str(exc)) from None
        trained = checkpoints[0]
        ensemble_covariance = model.covariance  # auto resolved
    else:
        trained = load_checkpoint(checkpoint)
        model = model_from_checkpoint(trained)
    heads = trained.model_config.heads
    # one model as an ensemble of its heads (row s is head s mod K; K = 1 without model.heads)
    as_heads = False
    if isinstance(model, PoseRegressor) and scored_as_heads(model.config, ensemble_covariance):
        as_heads = True
        try:
            ensemble_covariance = configure_heads(model, ensemble_covariance)
        except EnsembleError as exc:
            raise ExportError(str(exc)) from None
    rows = len(members) if ensemble else heads
    if mc_samples is None:
        mc_samples = DEFAULT_MC_SAMPLES
        if rows > 1 or as_heads:
            mc_samples = ensemble_samples(rows, DEFAULT_MC_SAMPLES, ensemble_covariance)
    problem = ensemble_samples_problem(rows, mc_samples, model.config.dropout == 0)
    if problem is not None:
        raise ExportError(f"mc_samples: {problem}")
    config = model.config
    scale, source, eval_summary = covariance_scale_from_metrics(
        checkpoint,
        Path(metrics) if metrics is not None else None,
        members if ensemble else (),
        ensemble_covariance if rows > 1 or as_heads else "dropout",
        heads if as_heads else 0,
    )
    try:
        prior = distance_prior_of(trained, None, distance_variance)
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    evaluated_k = (eval_summary.get("distance_prior") or {}).get("variance_per_squared_distance", 0.0)
    exported_k = 0.0 if prior is None else prior.k
    if source != "default" and not source.startswith("default (") and evaluated_k != exported_k:
        raise ExportError(
            f"{source} was evaluated with a distance variance of {evaluated_k:g}, the bundle would have "
            f"{exported_k:g}: its calibration does not fit (give eval-checkpoint and export the same "
            "--distance-variance)"
        )
    rig = trained.rig
    if len(rig.cameras) != config.num_cameras:
        raise ExportError(f"{checkpoint}: rig has {len(rig.cameras)} cameras, model {config.num_cameras}")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.new-", dir=out_dir.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; a bundle is meant to be copied and shared
    try:
        onnx_path = staging / ONNX_FILE
        proto = export_onnx(model, onnx_path, mc_samples, opset)
        worst = verify_onnx(model, onnx_path)
        weights = {
            "format": WEIGHTS_FORMAT,
            "version": 1,
            "model_config": to_mapping(trained.model_config),  # a member's, for an ensemble
            "model": model.state_dict(),
            **(
                {"ensemble_members": len(members), "ensemble_covariance": ensemble_covariance}
                if ensemble
                else {}
            ),
        }
        write_torch_file(staging / TORCH_FILE, weights)
        (staging / "engines").mkdir()
        onnx_record = _onnx_record(onnx_path, opset, int(proto.ir_version), worst, config.log_variance_output)
        provenance = _provenance(checkpoint, trained, source, eval_summary)
        if ensemble:
            provenance["ensemble"] = [str(path.resolve()) for path in members]
        if heads > 1:
            provenance["heads"] = heads
        if rows > 1 or as_heads:
            provenance["ensemble_covariance"] = ensemble_covariance
        bundle = _bundle(staging, trained, config, model.mask_dim, mc_samples, scale, onnx_record, provenance)
        bundle = replace(bundle, ensemble_members=rows, distance_prior=prior)
        if prior is not None:
            write_training_positions(staging, prior)
        if "uncertain_flag" in eval_summary:  # validated by suggested_uncertain_flag
            bundle = replace(bundle, uncertain_flag=UncertainFlag(**eval_summary["uncertain_flag"]))
        write_bundle(bundle)
        _replace_dir(staging, out_dir, overwrite)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if exc.errno not in WRITE_ERRNOS:
            raise
        kept = "; the existing bundle is unchanged" if out_dir.exists() else ""
        reason = f"{os.strerror(exc.errno)} ({errno.errorcode[exc.errno]})"
        raise ExportError(
            f"could not write the bundle {out_dir}: {reason}; nothing was written{kept}"
        ) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return load_bundle(out_dir)


def _bundle(
    path: Path,
    trained: Checkpoint,
    config: ModelConfig,
    mask_dim: int,
    mc_samples: int,
    scale: CovarianceScale,
    onnx_record: dict[str, Any],
    provenance: dict[str, Any],
) -> ModelBundle:
    return ModelBundle(
        path=path,
        schema_version=SCHEMA_VERSION,
        cameras=tuple(
            BundleCamera(c.name, c.image_topic, c.intrinsics.width, c.intrinsics.height)
            for c in trained.rig.cameras
        ),
        input_width=config.image_width,
        input_height=config.image_height,
        preprocessing=dict(PREPROCESSING),
        fusion=config.fusion,
        dof=config.dof,
        dropout=float(config.dropout),
        hidden_dim=mask_dim,  # the dropout mask's width: D, or F + D with embedding_dropout
        covariance_scale=scale,
        mc_samples=mc_samples,
        onnx=onnx_record,
        provenance=provenance,
        variance_head=config.variance_head,
        shift_variance=config.shift_variance,
    )


def _onnx_record(
    onnx_path: Path, opset: int, ir_version: int, worst: dict[str, float], log_variance: bool
) -> dict[str, Any]:
    """bundle.yaml's `onnx` section: the file, its contract and the verified parity."""
    specs = (*GRAPH_INPUTS, *graph_outputs(log_variance))
    names = [spec.name for spec in specs if spec.name in DYNAMIC_AXES]
    return {
        "file": ONNX_FILE,
        "bytes": onnx_path.stat().st_size,
        "opset": opset,
        "ir_version": ir_version,
        "exporter": EXPORTER,
        "inputs": {spec.name: spec.describe() for spec in GRAPH_INPUTS},
        "outputs": {spec.name: spec.describe() for spec in graph_outputs(log_variance)},
        "dynamic_axes": f"{DYNAMIC_AXIS} only (axis 0 of {', '.join(names)}); all else static",
        "verified_max_abs_diff": worst,
    }


def _provenance(
    checkpoint: Path, trained: Checkpoint, scale_source: str, eval_summary: dict[str, Any]
) -> dict[str, Any]:
    """Where the bundle came from: checkpoint, training config and data, rig, versions, metrics."""
    return {
        "checkpoint": str(checkpoint.resolve()),
        "epoch": trained.epoch,
        "exported_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "torch": str(torch.__version__),
        "onnx": onnx.__version__,
        "backbone": trained.model_config.backbone,
        "rotation": trained.model_config.rotation,
        "covariance_scale_source": scale_source,
        "dataset": asdict(trained.dataset),
        "best_metrics": trained.best_metrics,
        "eval_metrics": eval_summary,
        "rig": trained.rig.to_dict(),
        "model_config": to_mapping(trained.model_config),
        "config": to_mapping(trained.config),
    }
