"""The `pose-train` commands that make and ship a model: `fit`, `eval-checkpoint`, `export` and
`build-engine` (arguments and handlers; registered by `cli.py`)."""

from __future__ import annotations

import argparse
import math
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from pose_regressor.arguments import bounded_float, output_folder
from pose_regressor.bundle import MAX_MC_SAMPLES, inflation_line
from pose_regressor.distance_prior import MAX_VARIANCE_PER_SQUARED_DISTANCE
from pose_regressor.limits import DEFAULT_FLAG_SHARE, MAX_FLAG_SHARE
from pose_regressor.uncertainty import CovarianceScale
from pose_regressor_training.errors import CheckpointSaveError, TrainingError, TrainingInterrupted
from pose_regressor_training.stop_signals import sigterm_as_interrupt

if TYPE_CHECKING:
    from pose_regressor.bundle import ModelBundle

Subparsers = Any  # argparse's private _SubParsersAction

# Upper bounds of the arguments below (S is bounded by pose_regressor.bundle.MAX_MC_SAMPLES, as the
# bundle and the node bound it).
MAX_CALIB_FRAMES = 100_000  # build-engine --calib-frames
MAX_WORKSPACE_MB = 1 << 20  # build-engine --workspace-mb (1 TiB)
MAX_SEED = 2**32 - 1  # eval --seed


def bounded_int(name: str, low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high]; the error names the range and the value."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer in [{low}, {high}], got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be in [{low}, {high}], got {value}")
        return value

    parse.__name__ = name  # what argparse calls the type in its messages
    return parse


def _file_not_folder(what: str, usual_name: str) -> Callable[[str], Path]:
    """An argparse type: a file named `what`; a folder is refused at once, pointing at its
    `usual_name` where it has one (a run or eval folder is the usual slip: reading it would only
    say that no file "exists"). A missing file is named where it is read."""

    def parse(text: str) -> Path:
        path = Path(text)
        if path.is_dir():
            inside = path / usual_name
            hint = f" (did you mean {inside}?)" if inside.is_file() else ""
            raise argparse.ArgumentTypeError(f"{text} is a folder, not a {what}{hint}")
        return path

    return parse


#: `--checkpoint`, `--ensemble`; `export --metrics`
checkpoint_file = _file_not_folder("checkpoint file", "best.pt")
metrics_file = _file_not_folder("metrics file", "metrics.json")


def calibration_splits(text: str) -> str:
    """An argparse type: `--calib-split`, split names separated by commas, or '' (the evaluated
    split). A name that is no split would be left out as a split without frames, and the scale
    silently fitted on the evaluated split itself (in-sample), so it is refused here."""
    from pose_regressor.dataset_folder import SPLITS  # cv2 with it: eval-checkpoint reads images anyway

    for name in (part.strip() for part in text.split(",")):
        if name and name not in SPLITS:
            raise argparse.ArgumentTypeError(
                f"{name!r} is not a split: name {', '.join(SPLITS[:-1])} or {SPLITS[-1]}, several "
                "comma-separated (val,test), or '' for the evaluated split"
            )
    return text


def add_fit(sub: Subparsers) -> None:
    p = sub.add_parser(
        "fit",
        help="train a pose regressor (also under torchrun for multi-process DDP)",
        description="Train per a YAML config; key=value arguments override config entries "
        "(e.g. data.root=DIR optim.epochs=10). Writes RUN_DIR/last.pt (every epoch) and RUN_DIR/best.pt "
        "(best validation score), plus TensorBoard logs under RUN_DIR/tensorboard.",
    )
    p.add_argument("--config", type=Path, help="YAML config (default: built-in defaults)")
    p.add_argument("--out", type=output_folder, required=True, help="run directory")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="check every image first and leave out frames with a missing or corrupt one "
        "(same as data.skip_bad=true); without it the first such image stops training",
    )
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    p.set_defaults(handler=run_fit)


SKIP_BAD_HINT = "pass --skip-bad to leave out frames with unreadable images"


def resume_command(args: argparse.Namespace) -> str:
    """The `pose-train fit` command line that continues this run from RUN_DIR/last.pt."""
    argv = ["pose-train", "fit"]
    if args.config is not None:
        argv += ["--config", str(args.config)]
    argv += ["--out", str(args.out), "--resume"]
    argv += ["--quiet"] * args.quiet + ["--skip-bad"] * args.skip_bad
    return shlex.join([*argv, *args.overrides])


def run_fit(args: argparse.Namespace) -> int:
    from pose_regressor_training.train_config import load_train_config

    overrides = [*args.overrides, *(["data.skip_bad=true"] if args.skip_bad else [])]
    config = load_train_config(args.config, overrides)
    last = args.out / "last.pt"
    if not args.resume and last.exists():
        raise FileExistsError(f"{last} exists; pass --resume to continue it or choose another --out")
    # The training code (seconds of torch imports) only after the config and --out are checked.
    from pose_regressor_training.data.dataset import ImageLoadError
    from pose_regressor_training.train import fit

    with sigterm_as_interrupt() as termination:
        try:
            result = fit(config, args.out, resume=args.resume, progress=not args.quiet)
        except ImageLoadError as exc:
            raise TrainingError(f"{exc}; {SKIP_BAD_HINT}") from None
        except CheckpointSaveError as exc:
            fix = "free some space" if exc.disk_full else "fix that"
            then = f"resume with: {resume_command(args)}" if exc.resumable else "start the run again"
            raise TrainingError(f"{exc}; {fix}, then {then}") from None
        except TrainingInterrupted as stop:
            # Say where it stopped and how to go on.
            resumable = stop.checkpoint_epoch is not None
            then = f"resume with: {resume_command(args)}" if resumable else "start it again"
            print(f"pose-train fit: {stop.describe()}; {then}", file=sys.stderr, flush=True)
            return termination.exit_status
    if result.best_metrics:
        m = result.best_metrics
        best = f"best epoch {result.best_epoch}: val median {m['median_translation_m']:.3f} "
        best += f"{result.length_unit}, {m['median_rotation_deg']:.2f} deg"
    else:
        best = f"best epoch {result.best_epoch} (by training loss)"
    if result.sets_per_second > 0:
        print(f"fit: {best}; {result.sets_per_second:.0f} camera sets/s; {result.seconds:.0f} s in all")
        print(f"fit: checkpoints {args.out / 'best.pt'} and {args.out / 'last.pt'}")
    if result.epochs < config.optim.epochs:
        budget = config.optim.time_budget_minutes
        print(
            f"fit: trained {result.epochs} of optim.epochs={config.optim.epochs} epochs, what the time "
            f"budget of {budget:g} min held (that many without a budget: "
            f"optim.epochs={result.epochs} optim.time_budget_minutes=0)"
        )
    return 0


def add_eval(sub: Subparsers) -> None:
    p = sub.add_parser(
        "eval-checkpoint",
        aliases=["eval"],  # its first name; `pose-regressor eval-node` evaluates the running node
        help="accuracy and uncertainty metrics of a checkpoint, with plots",
        description="Evaluate a checkpoint on a dataset split with MC-dropout sampling; writes metrics.json, "
        "trajectory.png, error_cdf.png, error_vs_std.png and reliability.png. The covariance calibration "
        "(a scale and an exponent per axis group) is fitted on --calib-split (default val), or given by "
        "--calibration, and stored in metrics.json for export, with suggested "
        "max_position_std / max_rotation_std. A nearest-training-frame retrieval baseline is scored on "
        "the same frames.",
    )
    p.add_argument("--checkpoint", type=checkpoint_file, required=True)
    p.add_argument("--data", type=Path, help="dataset root (default: the one the checkpoint was trained on)")
    p.add_argument("--split", default="test")
    p.add_argument(
        "--mc-samples",
        type=bounded_int("mc_samples", 0, MAX_MC_SAMPLES),
        default=32,
        help=f"MC-dropout samples per frame (0: deterministic; at most {MAX_MC_SAMPLES})",
    )
    p.add_argument(
        "--calib-split",
        type=calibration_splits,
        default="val",
        help="split(s) to fit the covariance calibration on, comma-separated: 'val' (default), 'val,test' "
        "(more stretches, for the bundle you ship; the test NEES is then in-sample), '' (the eval split)",
    )
    p.add_argument(
        "--calibration",
        type=Path,
        metavar="METRICS_OR_BUNDLE",
        help="apply this covariance calibration instead of fitting one on --calib-split: an eval-checkpoint "
        "metrics.json, a bundle.yaml or a bundle directory (how a shipped model's covariance holds on other "
        "data, e.g. a new recording)",
    )
    p.add_argument(
        "--out",
        type=output_folder,
        help="output directory (default: next to the checkpoint, eval_<split>, or eval_heads_<split> for a "
        "model scored by its variance heads without dropout, as the default configs' are)",
    )
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument(
        "--seed", type=bounded_int("seed", 0, MAX_SEED), default=0, help="seed of the dropout masks"
    )
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="check every image first and leave out frames with a missing or corrupt one",
    )
    p.add_argument(
        "--no-baseline",
        dest="baseline",
        action="store_false",
        help="skip the nearest-training-frame retrieval baseline (it reads every training image)",
    )
    p.add_argument(
        "--camera-loss",
        action="store_true",
        help="rigs of 2+ cameras: evaluate the split again with each camera black in turn (a covered "
        "lens, a dead camera) and report its errors and how the covariance answers (one more "
        "evaluation per camera)",
    )
    _add_ensemble(
        p,
        "evaluate the deep ensemble of --checkpoint and these, --mc-samples rounded down to a multiple "
        "of the K members (default --out: eval_ensemble<K>_<split>, or eval_ensemble<K>_heads_<split>, "
        "which export --ensemble reads)",
    )
    _add_distance_variance(p)
    p.add_argument(
        "--flag-share",
        type=bounded_float(0.0, MAX_FLAG_SHARE, low_open=True),
        default=DEFAULT_FLAG_SHARE,
        metavar="F",
        help=f"share of the calibration frames that the suggested uncertain-flag thresholds flag "
        f"(default {DEFAULT_FLAG_SHARE:g}; at most {MAX_FLAG_SHARE:g}); export writes them into the "
        "bundle and the node flags by them. Larger: more of the gross errors caught, more good poses "
        "flagged (docs/node.md)",
    )
    p.set_defaults(handler=run_eval)


def _add_distance_variance(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--distance-variance",
        type=bounded_float(0.0, MAX_VARIANCE_PER_SQUARED_DISTANCE),
        default=None,
        metavar="K",
        help="position variance added per squared distance from the predicted position to the nearest "
        "training position (a std of sqrt(K) times that distance; the bundle carries the positions); "
        "default: the model's model.position_distance_variance (mono_small_cnn.yaml: 1; 0: off). Give "
        "export the same K as the eval-checkpoint whose calibration it takes",
    )


def _add_ensemble(p: argparse.ArgumentParser, what: str) -> None:
    from pose_regressor_training.models.config import ENSEMBLE_COVARIANCE_CHOICES

    p.add_argument(
        "--ensemble",
        type=checkpoint_file,
        nargs="+",
        default=[],
        metavar="CHECKPOINT",
        help=f"more checkpoints of the same model (other seeds): {what}",
    )
    p.add_argument(
        "--ensemble-covariance",
        choices=ENSEMBLE_COVARIANCE_CHOICES,
        default="auto",
        help="where an --ensemble's covariance comes from (or a model of K heads', model.heads): 'heads', "
        "each member once without dropout, its variance head plus the members' disagreement (S = K; "
        "members need model.variance_head or model.shift_variance); 'dropout', each member's MC-dropout "
        "samples plus their disagreement, no variance heads; 'auto' (default): heads where the members "
        "have them, else dropout; for one model of one head, its model.covariance (dropout unless its "
        "recipe chose heads: synth_quad.yaml does)",
    )


def check_ensemble_arguments(args: argparse.Namespace) -> None:
    """--checkpoint and --ensemble as members, refused before any is read: a count beyond
    `MAX_ENSEMBLE_MEMBERS` (each member costs its load and its memory first) or one file named
    twice (`pose_regressor_training.ensemble.check_member_paths`)."""
    if not args.ensemble:
        return
    from pose_regressor.bundle import MAX_ENSEMBLE_MEMBERS
    from pose_regressor_training.ensemble import check_member_paths

    members = 1 + len(args.ensemble)
    if members > MAX_ENSEMBLE_MEMBERS:
        raise ValueError(
            f"--ensemble names {len(args.ensemble)} checkpoints: an ensemble has at most "
            f"{MAX_ENSEMBLE_MEMBERS} members, --checkpoint and {MAX_ENSEMBLE_MEMBERS - 1} more"
        )
    check_member_paths([args.checkpoint, *args.ensemble])


def run_eval(args: argparse.Namespace) -> int:
    from pose_regressor_training.calibration import load_calibration
    from pose_regressor_training.data.dataset import ImageLoadError
    from pose_regressor_training.eval_summary import (
        calibration_line,
        camera_loss_line,
        retrieval_line,
        spearman_interval_text,
        uncertainty_lines,
    )
    from pose_regressor_training.evaluate import evaluate_checkpoint, evaluation_dir, write_evaluation

    if args.mc_samples < 0:
        raise ValueError("--mc-samples must be >= 0")
    check_ensemble_arguments(args)
    calibration = load_calibration(args.calibration) if args.calibration is not None else None
    try:
        evaluation = evaluate_checkpoint(
            args.checkpoint,
            args.data,
            args.split,
            args.mc_samples,
            args.calib_split or None,
            args.device,
            args.seed,
            skip_bad=args.skip_bad,
            baseline=args.baseline,
            camera_loss=args.camera_loss,
            ensemble=args.ensemble,
            ensemble_covariance=args.ensemble_covariance,
            covariance_scale=calibration,
            distance_variance=args.distance_variance,
            flag_share=args.flag_share,
        )
    except ImageLoadError as exc:
        raise TrainingError(f"{exc}; {SKIP_BAD_HINT}") from None
    for note in evaluation.skipped:
        print(f"eval: {note}")
    members = 1 + len(args.ensemble)
    covariance = evaluation.metrics.get("ensemble_covariance", "dropout")  # auto resolved
    out = args.out or evaluation_dir(args.checkpoint, args.split, members, covariance)
    heads = evaluation.metrics.get("heads", 1)
    if heads > 1 and covariance == "heads":
        print(
            f"eval: a model of {heads} heads on one backbone, without dropout; their variance heads and "
            "disagreement are the uncertainty"
        )
    elif members == 1 and covariance == "heads":
        print(
            "eval: the model without dropout, one row (its deterministic pose); its variance head (and "
            "track-shift spread) is the uncertainty"
        )
    elif heads > 1:
        print(
            f"eval: a model of {heads} heads, {evaluation.metrics['mc_samples'] // heads} MC samples each; "
            "their spread and disagreement are the uncertainty"
        )
    elif members > 1 and covariance == "heads":
        print(
            f"eval: the ensemble of {members} models, each without dropout; their variance heads and "
            "disagreement are the uncertainty"
        )
    elif members > 1:
        print(
            f"eval: the ensemble of {members} models, {evaluation.metrics['mc_samples'] // members} MC "
            "samples each; their spread and disagreement are the uncertainty"
        )
    if calibration is not None:
        evaluation.metrics["calibration_file"] = str(args.calibration.resolve())
    paths = write_evaluation(evaluation, out)
    m = evaluation.metrics
    unit = m["length_unit"]
    print(
        f"eval {args.split}: {m['frames']} frames, median {m['median_translation_m']:.3f} {unit} "
        f"{m['median_rotation_deg']:.2f} deg, mean {m['mean_translation_m']:.3f} {unit} "
        f"{m['mean_rotation_deg']:.2f} deg"
    )
    within = [k for k in m if k.startswith("pct_within_")]
    print("  " + ", ".join(f"within {_threshold_label(k, unit)}: {m[k]:.1f}%" for k in within))
    if "uncertainty" in m:
        u = m["uncertainty"]
        print(
            f"  uncertainty: spearman(pos std, err) {u['spearman_position_std_vs_error']:.2f} "
            f"({spearman_interval_text(u, 'position')}; "
            f"if the covariances were exact: {u['spearman_if_exact']['position']:.2f}), "
            f"median NEES {u['median_nees_before']:.3g} -> {u['median_nees_after']:.3g} "
            f"(scale {CovarianceScale.from_json(u['covariance_scale']).describe()} "
            + (
                f"fitted on {u['covariance_scale_fitted_on']})"
                if calibration is None
                else f"from {args.calibration})"
            )
        )
        for line in uncertainty_lines(u, unit):
            print("  " + line)
        held_out = calibration_line(u)
        if held_out is not None:
            print("  " + held_out)
        prior, without = (
            u.get("distance_prior"),
            m.get("covariance_variants", {}).get("without_distance_prior"),
        )
        if prior is not None and without is not None:
            print(
                f"  distance prior: position variance + {prior['variance_per_squared_distance']:g} x "
                f"(distance to the nearest of {prior['training_positions']} training positions)^2; "
                f"without it: spearman(pos std, err) {without['spearman_position_std_vs_error']:.2f}, "
                f"mean NEES {without['mean_nees_after']:.3g}"
            )
    if "retrieval_baseline" in m:
        print("  " + retrieval_line(m, m["retrieval_baseline"]))
    if "camera_loss" in m:
        print("  " + camera_loss_line(m["camera_loss"], unit))
    print("  wrote " + ", ".join(str(p) for p in paths))
    return 0


def _threshold_label(key: str, unit: str) -> str:
    """ "0.25 m, 2 deg" for pct_within_0.25m_2deg: the key says metres, the threshold is in `unit`."""
    distance, _, angle = key.removeprefix("pct_within_").partition("m_")
    return f"{distance} {unit}, {angle.removesuffix('deg')} deg"


def add_export(sub: Subparsers) -> None:
    p = sub.add_parser(
        "export",
        help="export a checkpoint into a model bundle (ONNX graph + bundle.yaml) for the robot",
        description="Write BUNDLE/model.onnx (uint8 images [T, H, W, 3] + dropout_mask [S, D] -> "
        "translation [S, 3], rotation [S, 4]; only S is dynamic), BUNDLE/bundle.yaml (cameras, input size, "
        "preprocessing, covariance scale, provenance) and BUNDLE/model.pt. The graph is checked against the "
        "TensorRT operator allow-list and against PyTorch with ONNX Runtime before the bundle is written.",
    )
    p.add_argument("--checkpoint", type=checkpoint_file, required=True, help="checkpoint (RUN_DIR/best.pt)")
    p.add_argument("--out", type=output_folder, required=True, help="bundle directory to create")
    p.add_argument(
        "--mc-samples",
        type=bounded_int("mc_samples", 1, MAX_MC_SAMPLES),
        default=None,
        help="default MC-dropout samples S per frame (TensorRT profile; default 32; an --ensemble of K "
        "(or a model of K heads) needs a multiple of K, default the largest up to 32, and exactly K "
        f"without dropout (--ensemble-covariance heads); at most {MAX_MC_SAMPLES})",
    )
    p.add_argument(
        "--metrics",
        type=metrics_file,
        help="pose-train eval-checkpoint metrics.json with the covariance scale "
        "(default: CHECKPOINT_DIR/eval_test/metrics.json if it evaluated this checkpoint; "
        "eval_ensemble<K>[_heads]_test/ for an --ensemble, eval_heads_test/ for a model of heads)",
    )
    _add_ensemble(
        p,
        "one graph runs all K members and output row s is member s mod K's; the node's covariance "
        "then holds their disagreement (K times the backbone cost)",
    )
    _add_distance_variance(p)
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (17..20; 17 parses on TensorRT 8.5+)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle directory")
    p.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace) -> int:
    check_ensemble_arguments(args)
    from pose_regressor_training.eval_summary import calibration_warning
    from pose_regressor_training.export import export_bundle, metrics_mismatch

    bundle = export_bundle(
        args.checkpoint,
        args.out,
        mc_samples=args.mc_samples,
        opset=args.opset,
        overwrite=args.overwrite,
        metrics=args.metrics,
        ensemble=args.ensemble,
        ensemble_covariance=args.ensemble_covariance,
        distance_variance=args.distance_variance,
    )
    size_mb = bundle.onnx_path.stat().st_size / 1e6
    cams = ", ".join(f"{c.name} {c.width}x{c.height}" for c in bundle.cameras)
    print(f"export: wrote {bundle.path} (model.onnx {size_mb:.1f} MB, opset {bundle.onnx['opset']})")
    print(f"  cameras: {cams} -> input {bundle.input_width}x{bundle.input_height}, fusion {bundle.fusion}")
    print(f"  dof {bundle.dof}, D {bundle.hidden_dim}, dropout {bundle.dropout:g}, S {bundle.mc_samples}")
    if bundle.distance_prior is not None:
        prior = bundle.distance_prior
        print(
            f"  distance prior: position variance + {prior.k:g} x (distance to the nearest of "
            f"{len(prior.positions)} training positions)^2"
        )
    if bundle.ensemble_members > 1:
        k = bundle.ensemble_members
        what = "heads on one backbone (model.heads)" if "heads" in bundle.provenance else "models"
        if bundle.dropout > 0:
            rows = f"MC sample s of member s mod {k}; S must be a multiple of {k}"
        else:
            rows = f"the pose and variance head of member s, without dropout; S must be {k}"
        print(f"  ensemble of {k} {what}: output row s is {rows}")
    elif bundle.provenance.get("ensemble_covariance") == "heads":
        print("  without dropout: one row, the deterministic pose; the covariance is its variance head's")
    diff = bundle.onnx["verified_max_abs_diff"]
    print(
        f"  ONNX Runtime vs PyTorch: max |diff| {diff['translation_m']:.1e} m, "
        f"{diff['rotation']:.1e} (quaternion)"
        + (f", {diff['log_variance']:.1e} (log-variance)" if "log_variance" in diff else "")
    )
    source = bundle.provenance.get("covariance_scale_source")
    if source == "default":
        print(
            f"pose-train export: warning: no covariance scale for {args.checkpoint} (run pose-train "
            "eval-checkpoint first or pass --metrics); using 1.0, so covariances are uncalibrated",
            file=sys.stderr,
        )
    elif str(source).startswith("default ("):
        reason = str(source).removeprefix("default (").removesuffix(")")
        print(
            f"pose-train export: warning: no usable covariance scale: {reason}; using 1.0, so "
            "covariances are uncalibrated",
            file=sys.stderr,
        )
    else:
        print(f"  covariance scale {bundle.covariance_scale.describe()} (from {source})")
        evaluated = bundle.provenance.get("eval_metrics") or {}
        if args.metrics is not None:
            mismatch = metrics_mismatch(
                args.checkpoint, bundle.provenance.get("epoch"), args.metrics, evaluated
            )
            if mismatch:
                print(f"pose-train export: warning: {mismatch}", file=sys.stderr)
        warning = calibration_warning(evaluated)
        if warning:
            print(f"pose-train export: warning: {warning}", file=sys.stderr)
    flag, unit = bundle.uncertain_flag, bundle.length_unit
    refused = (bundle.provenance.get("eval_metrics") or {}).get("uncertain_flag_refused")
    if refused:
        print(
            f"pose-train export: warning: the evaluation's suggested uncertain-flag thresholds are not "
            f"carried ({refused}); the node flags at its generic 1 {unit.rstrip('s')} / 0.35 rad unless its "
            "max_position_std / max_rotation_std are set",
            file=sys.stderr,
        )
    if flag is not None:
        print(
            f"  uncertain flag: position std > {flag.max_position_std:.3g} {unit} or rotation std > "
            f"{math.degrees(flag.max_rotation_std):.3g} deg (suggested by the evaluation; the node "
            "uses them while its max_position_std / max_rotation_std are 0)"
        )
    line = inflation_line(bundle.provenance)
    if line:
        print(f"  {line}")
    units_warning = bundle.units_warning()
    if units_warning:
        print(f"pose-train export: warning: {units_warning}", file=sys.stderr)
    return 0


def add_build_engine(sub: Subparsers) -> None:
    p = sub.add_parser(
        "build-engine",
        help="build a bundle's TensorRT plan ahead of time, on the target GPU (optionally INT8-calibrated)",
        description="Compile BUNDLE/model.onnx into a TensorRT plan cached in BUNDLE/engines/ (keyed by GPU, "
        "compute capability, TensorRT version, precision and shapes), so that the robot's first start does "
        "not wait for the build. Needs the tensorrt package and a CUDA GPU: run it on the robot (or an "
        "identical GPU with the same TensorRT). INT8 is calibrated on --calib-frames frames of the train "
        "split of --calib-data (a dataset folder), preprocessed exactly as on the robot.",
    )
    p.add_argument("--bundle", type=Path, required=True, help="model bundle directory")
    p.add_argument("--precision", choices=("fp16", "int8", "fp32"), default="fp16")
    p.add_argument("--calib-data", type=Path, help="dataset folder whose train split calibrates INT8")
    p.add_argument(
        "--calib-frames",
        type=int,
        default=256,
        help=f"calibration frames (evenly spaced; at most {MAX_CALIB_FRAMES})",
    )
    p.add_argument(
        "--max-samples",
        type=bounded_int("max_samples", 1, MAX_MC_SAMPLES),
        help=f"largest S the plan accepts (default: the bundle's mc_samples; at most {MAX_MC_SAMPLES})",
    )
    p.add_argument(
        "--workspace-mb",
        type=bounded_int("workspace_mb", 1, MAX_WORKSPACE_MB),
        default=1024,
        help="TensorRT builder workspace (MiB)",
    )
    p.add_argument("--device", type=int, default=0, help="CUDA device index")
    p.add_argument("--rebuild", action="store_true", help="build even if a usable cached plan exists")
    p.set_defaults(handler=run_build_engine)


def load_calibration_images(
    bundle: ModelBundle, data: Path, frames: int, split: str = "train"
) -> list[NDArray[np.uint8]]:
    """`frames` evenly spaced camera sets of a dataset folder's `split`, as the graph's input
    [T, H, W, 3] (the bundle's cameras by name, through `pose_regressor.bundle.preprocess`)."""
    from pose_regressor.bundle import preprocess
    from pose_regressor_training.data.dataset import PoseDataset
    from pose_regressor_training.data.sources import load_dataset

    if not 1 <= frames <= MAX_CALIB_FRAMES:
        raise ValueError(f"--calib-frames must be >= 1 and <= {MAX_CALIB_FRAMES}, got {frames}")
    frame_list = load_dataset("folder", data, split).select_cameras(bundle.camera_names)
    if len(frame_list) == 0:
        raise TrainingError(f"{data} has no {split} frames to calibrate with")
    dataset = PoseDataset(frame_list, image_size=None, preload=False, progress=False)
    picks = np.unique(np.linspace(0, len(dataset) - 1, min(frames, len(dataset))).round().astype(int))
    return [preprocess(list(dataset.images(int(i))), bundle) for i in picks]


def run_build_engine(args: argparse.Namespace) -> int:
    from pose_regressor.bundle import load_bundle
    from pose_regressor.engines import EngineError, tensorrt_unavailable_reasons

    bundle = load_bundle(args.bundle)
    if args.calib_data is not None and args.precision != "int8":
        raise ValueError("--calib-data is only used with --precision int8")
    reasons = tensorrt_unavailable_reasons()
    if reasons:
        raise TrainingError(f"cannot build a TensorRT plan on this machine: {'; '.join(reasons)}")
    from pose_regressor.engines.tensorrt_engine import TensorRTEngine

    images = None
    if args.calib_data is not None:
        images = load_calibration_images(bundle, args.calib_data, args.calib_frames)
        print(f"build-engine: {len(images)} calibration frames from {args.calib_data} (train split)")
    try:
        engine = TensorRTEngine(
            bundle,
            precision=args.precision,
            calibration_images=images,
            workspace_mb=args.workspace_mb,
            device=args.device,
            max_samples=args.max_samples,
            rebuild=args.rebuild,
        )
    except EngineError as exc:
        raise TrainingError(str(exc)) from None
    how = f"built in {engine.build_seconds:.1f} s" if engine.built else "already cached"
    print(f"build-engine: {engine.describe()} for S 1..{engine.max_samples}: {how}")
    print(engine.plan_path)
    return 0
