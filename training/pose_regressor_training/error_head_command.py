"""`pose-train error-head`: add a second variance head, fitted on cross-fitted errors, to a trained
model (`error_head.py` says why). Trains K fold models of the checkpoint's own recipe, each
without one fold of the training trajectories (`data.holdout_fold`), takes every training frame's
error from the fold model that never saw it, fits the head on the trained model's frozen features
and writes OUT/best.pt: the same model, every pose unchanged, with `model.error_head`.

The fold runs live in OUT/folds/fold<k>of<K>; a run stopped mid-way (Ctrl-C, SIGTERM, a full
disk) continues where it stopped when the same command runs again, and finished folds are reused.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from pose_regressor.arguments import output_folder
from pose_regressor.files import atomic_write_text, json_text
from pose_regressor_training.errors import CheckpointSaveError, TrainingError, TrainingInterrupted
from pose_regressor_training.model_commands import bounded_int
from pose_regressor_training.stop_signals import sigterm_as_interrupt
from pose_regressor_training.train_config import MAX_FOLDS

Subparsers = Any  # argparse's private _SubParsersAction

#: Written into a fold's run directory once its `fit` has finished.
FOLD_DONE = "fold_done"
MAX_HEAD_EPOCHS = 1000
#: A validation Spearman this much lower after the head than before draws a warning.
WORSE_BY = 0.05
#: A validation AUROC for gross errors this much lower after the head than before draws a warning:
#: the node's uncertain flag would catch fewer of them (docs/results.md measured 0.002-0.04 less
#: on the synthetic test split, and fewer caught where views partly change).
FLAG_WORSE_BY = 0.02


def add_error_head(sub: Subparsers) -> None:
    p = sub.add_parser(
        "error-head",
        help="add a second variance head fitted on cross-fitted errors to a trained model",
        description="Train --folds models of the checkpoint's recipe, each without one fold of the "
        "training trajectories, and fit a second log-variance head (model.error_head) on the trained "
        "model's features against the error each training frame gets from the fold model that never saw "
        "it. Writes OUT/best.pt (the same poses; the variance of the two heads added) and "
        "OUT/error_head.json; evaluate and export OUT/best.pt as any checkpoint. Costs about one more "
        "training. Running the same command again continues stopped folds and reuses finished ones.",
    )
    p.add_argument("--checkpoint", type=Path, required=True, help="the trained model (RUN/best.pt)")
    p.add_argument("--out", type=output_folder, required=True, help="output directory")
    p.add_argument(
        "--folds",
        type=bounded_int("folds", 2, MAX_FOLDS),
        default=2,
        help="fold models to train (default 2: each on half of the training trajectories)",
    )
    p.add_argument("--data", type=Path, help="dataset root (default: the one the checkpoint was trained on)")
    p.add_argument(
        "--head-epochs",
        type=bounded_int("head_epochs", 1, MAX_HEAD_EPOCHS),
        default=15,
        help="epochs of the head's fit over (frame, track shift) pairs (default 15)",
    )
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=run_error_head)


def run_error_head(args: argparse.Namespace) -> int:
    from pose_regressor_training.checkpoint import load_checkpoint, save_checkpoint
    from pose_regressor_training.data.dataset import PoseDataset
    from pose_regressor_training.data.sources import load_dataset
    from pose_regressor_training.error_head import (
        ErrorHeadFit,
        check_supported,
        fit_error_head,
        head_features,
        residuals,
        with_error_head,
    )
    from pose_regressor_training.models import build_model
    from pose_regressor_training.predict import predict, resolve_device
    from pose_regressor_training.training_data import split_fold, subsample_frames

    started = time.monotonic()
    out_path = args.out / "best.pt"
    if out_path.exists():
        raise FileExistsError(f"{out_path} exists; choose another --out")
    checkpoint = load_checkpoint(args.checkpoint)
    model = _model_of(checkpoint, args.checkpoint)
    try:
        check_supported(model)
    except ValueError as exc:
        raise TrainingError(f"error-head: {exc}") from None
    config = checkpoint.config
    if checkpoint.model_config.error_head:
        raise TrainingError(f"error-head: {args.checkpoint} already has an error head")
    if config.init_from:
        # a fold model would start from weights that saw every fold: its errors would not be held out
        raise TrainingError(
            f"error-head: {args.checkpoint} was trained from init_from={config.init_from}; fold models "
            "started from those weights would have seen the frames they are to be tested on"
        )
    root = Path(args.data) if args.data is not None else Path(config.data.root or checkpoint.dataset.root)
    # The fold models train the epochs the model's own run planned, without a time budget: under
    # the budget they would train another number of epochs (each is about 1/K shorter).
    planned = checkpoint.resume.planned_epochs if checkpoint.resume is not None else None
    optim = replace(config.optim, epochs=planned or config.optim.epochs, time_budget_minutes=0.0)
    config = replace(config, data=replace(config.data, root=str(root)), optim=optim)
    device = resolve_device(args.device)
    model.to(device)
    data = config.data
    frames = load_dataset(data.kind, root, data.train_split, **data.options).select_cameras(data.cameras)
    frames = subsample_frames(frames, data.max_frames)
    if frames.rig.names != checkpoint.rig.names:  # before a fold trains, not after (as eval-checkpoint)
        raise TrainingError(
            f"error-head: {root} has cameras {frames.rig.names}, the model was trained on "
            f"{checkpoint.rig.names}"
        )
    size = (model.config.image_width, model.config.image_height)
    unit = checkpoint.dataset.length_unit
    features, errors, fold_records = [], [], []
    for k in range(1, args.folds + 1):
        fold = f"{k}/{args.folds}"
        _, held = split_fold(frames, fold)
        run_dir = args.out / "folds" / f"fold{k}of{args.folds}"
        fold_config = replace(config, data=replace(data, holdout_fold=fold))
        print(
            f"error-head: fold {fold}: a model without {len(held)} of the {len(frames)} training sets "
            f"({run_dir})",
            flush=True,
        )
        stopped = _train_fold(fold_config, run_dir, args)
        if stopped is not None:
            return stopped
        fold_model = _model_of(load_checkpoint(run_dir / "best.pt"), run_dir / "best.pt").to(device)
        sets = PoseDataset(held, size, preload=False, skip_bad=data.skip_bad)
        t, q = predict(fold_model, sets, device)
        kept = sets.frame_list
        r = residuals(kept.translations(), kept.quaternions(), t[:, 0], q[:, 0])
        features.append(head_features(model, sets, device))
        errors.append(r)
        t_err = float(np.median(np.linalg.norm(r[:, :3], axis=1)))
        r_err = float(np.degrees(np.median(np.linalg.norm(r[:, 3:], axis=1))))
        print(
            f"error-head: fold {fold}: its error on them: median {t_err:.3f} {unit}, {r_err:.2f} deg",
            flush=True,
        )
        fold_records.append(
            {
                "fold": fold,
                "held_out_sets": len(kept),
                "median_translation": t_err,
                "median_rotation_deg": r_err,
            }
        )
    print(f"error-head: fitting the head on {sum(len(f) for f in features)} cross-fitted errors", flush=True)
    new_config = replace(checkpoint.model_config, error_head=True)
    new_model = build_model(replace(new_config, pretrained=False))
    missing, unexpected = new_model.load_state_dict(checkpoint.model, strict=False)
    assert not unexpected and all(key.startswith("fc_error_log_variance.") for key in missing), missing
    new_model.eval()
    head_fit = ErrorHeadFit(epochs=args.head_epochs, seed=config.seed)
    head = fit_error_head(
        new_model, np.concatenate(features), np.concatenate(errors), head_fit, not args.quiet
    )
    state = with_error_head(new_model, head)
    validation, gross = _validation_ranking(model, new_model.to(device), config, root, size, device)
    args.out.mkdir(parents=True, exist_ok=True)
    # the same record with the new head; made outside `fit`, so not resumable
    save_checkpoint(out_path, replace(checkpoint, model_config=new_config, model=state, resume=None))
    record = {
        "checkpoint": str(args.checkpoint),
        "data": str(root),
        "folds": fold_records,
        "head_fit": asdict(head_fit),
        "length_unit": unit,
        "validation_spearman": validation,
        "validation_gross_error_auroc": gross,
        "seconds": round(time.monotonic() - started, 1),
    }
    atomic_write_text(args.out / "error_head.json", json_text(record))
    if validation:
        print(
            f"error-head: {config.data.val_split}: Spearman(position variance, error) "
            f"{validation['position_before']:.3f} -> {validation['position_after']:.3f}, rotation "
            f"{validation['rotation_before']:.3f} -> {validation['rotation_after']:.3f} (raw, uncalibrated)",
            flush=True,
        )
    if gross:
        print(
            f"error-head: {config.data.val_split}: the variance finds the {gross['gross_errors']:.0f} gross "
            f"errors (> 3x the median) at AUROC position {gross['position_before']:.3f} -> "
            f"{gross['position_after']:.3f}, rotation {gross['rotation_before']:.3f} -> "
            f"{gross['rotation_after']:.3f} (what the node's uncertain flag ranks by)",
            flush=True,
        )
    flag_worse = ranked_worse(gross, FLAG_WORSE_BY)
    if flag_worse:
        print(
            f"error-head: warning: on {config.data.val_split} the new head finds the gross errors less "
            f"well by the {' and '.join(flag_worse)} variance, so the uncertain flag will catch fewer; "
            "on the synthetic scene it also caught fewer where views partly changed (a camera "
            "covered, furniture moved). Keep the model without it where the flag must gate poses",
            flush=True,
        )
    worse = ranked_worse(validation)
    if worse:
        print(
            f"error-head: warning: on {config.data.val_split} the variance ranks the {' and '.join(worse)} "
            "errors worse with the new head than without; evaluate both checkpoints before shipping "
            "one (few frames, as in a small set, make either ranking noisy)",
            flush=True,
        )
    print(
        f"error-head: wrote {out_path}; evaluate it with: pose-train eval-checkpoint --checkpoint {out_path}"
    )
    return 0


def ranked_worse(validation: dict[str, float], by: float = WORSE_BY) -> list[str]:
    """The groups (position, rotation) whose validation score (`_validation_ranking`'s Spearman or
    gross-error AUROC dict; {}: none) fell by more than `by` with the new head."""
    return [
        group
        for group in ("position", "rotation")
        if validation and validation[f"{group}_after"] < validation[f"{group}_before"] - by
    ]


def _model_of(checkpoint: Any, source: Path) -> Any:
    from pose_regressor_training.checkpoint import model_from_checkpoint

    return model_from_checkpoint(checkpoint, source)


def _train_fold(config: Any, run_dir: Path, args: argparse.Namespace) -> int | None:
    """Trains one fold model into `run_dir`, continuing a stopped run; a finished one is reused.
    Returns the exit status when the training was stopped (Ctrl-C, SIGTERM), None when done."""
    from pose_regressor_training.checkpoint import load_checkpoint
    from pose_regressor_training.train import fit
    from pose_regressor_training.typed_config import to_mapping

    last = run_dir / "last.pt"
    if last.exists():
        theirs = to_mapping(load_checkpoint(last).config)
        if theirs != to_mapping(config):
            raise TrainingError(
                f"error-head: {run_dir} holds a run of another recipe or data; choose another --out"
            )
        if (run_dir / FOLD_DONE).exists():
            print(f"error-head: reusing the finished fold model in {run_dir}", flush=True)
            return None
        print(f"error-head: continuing the stopped fold model in {run_dir}", flush=True)
    again = f"run the same pose-train error-head command again to continue (it resumes {run_dir})"
    with sigterm_as_interrupt() as termination:
        try:
            fit(config, run_dir, resume=last.exists(), progress=not args.quiet)
        except CheckpointSaveError as exc:
            raise TrainingError(f"error-head: {exc}; {again}") from None
        except TrainingInterrupted as stop:
            print(f"pose-train error-head: {stop.describe()}; {again}", file=sys.stderr, flush=True)
            return termination.exit_status
    (run_dir / FOLD_DONE).write_text("")
    return None


def _validation_ranking(
    base: Any, combined: Any, config: Any, root: Path, size: tuple[int, int], device: Any
) -> tuple[dict[str, float], dict[str, float]]:
    """On the validation split, before and after the error head: the Spearman of the raw
    (uncalibrated) position and rotation variance with the error, and the AUROC of each for the
    gross errors (`gross_errors`: > 3x the median; with `gross_errors`, their count). Empty dicts
    without a validation split, and no AUROC without both gross and other errors."""
    from pose_regressor_training.data.dataset import PoseDataset
    from pose_regressor_training.data.sources import load_dataset
    from pose_regressor_training.error_head import residuals
    from pose_regressor_training.predict import predict_outputs

    data = config.data
    if not data.val_split:
        return {}, {}
    frames = load_dataset(data.kind, root, data.val_split, **data.options).select_cameras(data.cameras)
    if len(frames) < 2:
        return {}, {}
    sets = PoseDataset(frames, size, preload=False, skip_bad=data.skip_bad)
    ranking: dict[str, float] = {}
    gross: dict[str, float] = {}
    for name, model in (("before", base), ("after", combined)):
        t, q, log_variance = predict_outputs(model, sets, device)
        assert log_variance is not None  # check_supported: a variance head
        kept = sets.frame_list
        r = residuals(kept.translations(), kept.quaternions(), t[:, 0], q[:, 0])
        ranked, found = variance_scores(np.exp(log_variance[:, 0]), r)
        ranking.update({f"{group}_{name}": value for group, value in ranked.items()})
        gross.update({key if key == "gross_errors" else f"{key}_{name}": v for key, v in found.items()})
    return ranking, gross


def variance_scores(variance: np.ndarray, residual: np.ndarray) -> tuple[dict[str, float], dict[str, float]]:
    """How per-axis variances [N, 6] of one model fit its residuals [N, 6]: the Spearman of the
    position and rotation variance with the error, and the AUROC of each for the gross errors
    (`gross_errors`: > 3x the median) with their count; {} for the AUROCs without both gross
    and other errors."""
    from pose_regressor.uncertainty_metrics import auroc, gross_errors, spearman

    t_err, r_err = np.linalg.norm(residual[:, :3], axis=1), np.linalg.norm(residual[:, 3:], axis=1)
    position, rotation = variance[:, :3].sum(1), variance[:, 3:].sum(1)
    ranking = {"position": spearman(position, t_err), "rotation": spearman(rotation, r_err)}
    labels = gross_errors(t_err, r_err)
    found = auroc(position, labels), auroc(rotation, labels)
    if found[0] is None or found[1] is None:
        return ranking, {}
    return ranking, {"position": found[0], "rotation": found[1], "gross_errors": int(labels.sum())}
