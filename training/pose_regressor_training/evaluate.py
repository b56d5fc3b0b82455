"""`pose-train eval-checkpoint`: accuracy and uncertainty metrics of a checkpoint on a dataset split,
with plots."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.stats import chi2

from pose_regressor.distance_prior import DistancePrior
from pose_regressor.error_correlation import error_correlation
from pose_regressor.files import atomic_write_text, json_text
from pose_regressor.limits import DEFAULT_FLAG_SHARE
from pose_regressor.metrics import (
    covariance_stds,
    error_summary,
    nees_values,
    pose_errors,
    tangent_residuals,
)
from pose_regressor.uncertainty import CovarianceScale, PoseEstimate, estimate_from_samples
from pose_regressor.uncertainty_metrics import (
    consistency,
    spearman,
    spearman_if_exact,
    spearman_interval,
    uncertain_flag_report,
)
from pose_regressor_training.calibration import (
    CALIBRATION_QUANTILE,
    calibration_split_names,
    fit_covariance_scale,
    fit_covariance_scales,
    held_out_consistency,
)
from pose_regressor_training.checkpoint import load_checkpoint, model_from_checkpoint
from pose_regressor_training.data.dataset import PoseDataset, describe_skipped
from pose_regressor_training.data.sources import length_unit_of, load_dataset
from pose_regressor_training.distance_prior import distance_prior_of
from pose_regressor_training.ensemble import (
    EnsembleRegressor,
    configure_heads,
    ensemble_dir_tag,
    ensemble_samples,
    load_ensemble,
    scored_as_heads,
)
from pose_regressor_training.models import PoseRegressor
from pose_regressor_training.predict import CameraSets, predict_with_deterministic, resolve_device
from pose_regressor_training.retrieval import retrieve_poses
from pose_regressor_training.training_data import subsample_frames


@dataclass
class Evaluation:
    metrics: dict[str, Any]
    t_gt: NDArray[np.float64]
    q_gt: NDArray[np.float64]
    estimates: list[PoseEstimate]
    sequences: NDArray[np.int64]
    translation_errors: NDArray[np.float64]
    rotation_errors: NDArray[np.float64]
    skipped: list[str] = field(default_factory=list)  # one line per split that lost frames (skip_bad)
    stamps_ns: NDArray[np.int64] | None = None  # of the test frames (the trajectory breaks at gaps)


def evaluation_dir(
    checkpoint: Path, split: str, ensemble_members: int = 1, ensemble_covariance: str = "dropout"
) -> Path:
    """Where `pose-train eval-checkpoint` writes the metrics and plots of `checkpoint` on `split`
    (of the ensemble of K > 1 members that `checkpoint` leads: eval_ensemble<K>_<split>, or
    eval_ensemble<K>_heads_<split> for an ensemble whose covariance comes from the heads; one model
    evaluated with its variance head(s) and no dropout, --ensemble-covariance heads: eval_heads_<split>)."""
    tag = ensemble_dir_tag(ensemble_covariance)
    if ensemble_members > 1:
        return checkpoint.parent / f"eval_ensemble{ensemble_members}{tag}_{split}"
    return checkpoint.parent / f"eval{tag}_{split}"


def ensemble_record(members: Sequence[Path]) -> list[str]:
    """How metrics.json names an ensemble's members (resolved paths, member order)."""
    return [str(Path(member).resolve()) for member in members]


def _mc_estimates(
    t_samples: NDArray[np.float64],
    q_samples: NDArray[np.float64],
    scale: float | CovarianceScale,
    log_variances: NDArray[np.float64] | None = None,
    distance_prior: DistancePrior | None = None,
) -> list[PoseEstimate]:
    """One estimate per frame; with `log_variances` (N, S, 6) the aleatoric variance is included,
    with `distance_prior` its position variance (as the bundle's)."""
    variances = [None] * len(t_samples) if log_variances is None else list(log_variances)
    return [
        estimate_from_samples(t, q, scale, log_variances=lv, distance_prior=distance_prior)
        for t, q, lv in zip(t_samples, q_samples, variances, strict=True)
    ]


def evaluate_checkpoint(
    checkpoint: Path,
    data_root: Path | None = None,
    split: str = "test",
    mc_samples: int = 32,
    calibration_split: str | None = "val",
    device_name: str = "auto",
    seed: int = 0,
    skip_bad: bool = False,
    baseline: bool = True,
    camera_loss: bool = False,
    ensemble: Sequence[Path] = (),
    ensemble_covariance: str = "auto",
    covariance_scale: CovarianceScale | None = None,
    distance_variance: float | None = None,
    flag_share: float = DEFAULT_FLAG_SHARE,
) -> Evaluation:
    """Metrics of `checkpoint` on `split`; with `skip_bad`, frames whose images cannot be read are
    left out (counted in metrics["skipped_frames"]) instead of stopping with `ImageLoadError`;
    with `baseline`, the nearest-training-frame retrieval baseline is scored on the same frames;
    with `camera_loss`, the split again with each camera black in turn (metrics["camera_loss"]);
    with `ensemble`, the deep ensemble of `checkpoint` and these (`evaluate_checkpoint_splits`),
    its covariance from `ensemble_covariance` (`pose_regressor_training.ensemble`); with
    `covariance_scale`, that calibration instead of one fitted on `calibration_split` (a bundle's,
    or a val split's applied to frames of another dataset); `distance_variance`, the distance
    prior's k instead of the model's `position_distance_variance`; `flag_share`, the share of the
    calibration split's frames that the suggested uncertain-flag thresholds flag."""
    return evaluate_checkpoint_splits(
        checkpoint,
        (split,),
        data_root,
        mc_samples,
        calibration_split,
        device_name,
        seed,
        skip_bad,
        baseline,
        camera_loss=camera_loss,
        ensemble=ensemble,
        ensemble_covariance=ensemble_covariance,
        covariance_scale=covariance_scale,
        distance_variance=distance_variance,
        flag_share=flag_share,
    )[0]


def evaluate_checkpoint_splits(
    checkpoint: Path,
    splits: Sequence[str],
    data_root: Path | None = None,
    mc_samples: int = 32,
    calibration_split: str | None = "val",
    device_name: str = "auto",
    seed: int = 0,
    skip_bad: bool = False,
    baseline: bool = True,
    max_frames: int = 0,
    camera_loss: bool = False,
    ensemble: Sequence[Path] = (),
    ensemble_covariance: str = "auto",
    covariance_scale: CovarianceScale | None = None,
    distance_variance: float | None = None,
    flag_share: float = DEFAULT_FLAG_SHARE,
) -> list[Evaluation]:
    """`evaluate_checkpoint` of each of `splits`, predicting every split once: the calibration
    split's predictions serve both its own evaluation and the others' covariance scale.
    `max_frames` > 0: about that many frames of each split, whole trajectories evenly spread (as
    `data.max_frames` picks training frames), for a quicker, coarser evaluation. `ensemble`: more
    checkpoints of the same model: the deep ensemble of all is evaluated, with `mc_samples` rounded
    down to a multiple of its K members (at least K), as many MC samples for each (one each, no
    dropout, for `ensemble_covariance` ``heads``)."""
    predictor = _SplitPredictor(
        checkpoint,
        data_root,
        mc_samples,
        device_name,
        seed,
        skip_bad,
        max_frames,
        ensemble,
        ensemble_covariance,
        distance_variance,
    )
    if camera_loss and len(predictor.trained.rig.names) < 2:
        raise ValueError(
            "--camera-loss blacks out one camera at a time: it needs a rig of 2 or more cameras, "
            f"this model has {len(predictor.trained.rig.names)}"
        )
    return [
        _evaluate(
            predictor,
            checkpoint,
            split,
            calibration_split,
            baseline,
            camera_loss,
            covariance_scale,
            flag_share,
        )
        for split in splits
    ]


def _evaluate(
    predictor: _SplitPredictor,
    checkpoint: Path,
    split: str,
    calibration_split: str | None,
    baseline: bool,
    camera_loss: bool = False,
    covariance_scale: CovarianceScale | None = None,
    flag_share: float = DEFAULT_FLAG_SHARE,
) -> Evaluation:
    mc_samples = predictor.mc_samples
    test = predictor.run(split)
    t_err, r_err = pose_errors(test.t_gt, test.q_gt, test.t_mean, test.q_mean)
    metrics: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "epoch": predictor.trained.epoch,  # export warns when it ships this calibration for another
        **(
            {
                "ensemble": ensemble_record(predictor.members),
                "ensemble_covariance": predictor.ensemble_covariance,
            }
            if len(predictor.members) > 1
            else {}
        ),
        **({"heads": predictor.heads} if predictor.heads > 1 else {}),
        **(
            {"ensemble_covariance": predictor.ensemble_covariance}
            if len(predictor.members) == 1 and predictor.ensemble_covariance is not None
            else {}
        ),
        "data": str(predictor.root),
        "split": split,
        "mc_samples": mc_samples,
        # what the positions and every `_m` value below are in: "units" for an import without a scale
        "length_unit": predictor.length_unit,
        **error_summary(t_err, r_err),
        "skipped_frames": dict(predictor.skipped),
        "per_sequence": {
            str(int(seq)): error_summary(t_err[test.sequences == seq], r_err[test.sequences == seq])
            for seq in np.unique(test.sequences)
        },
        "deterministic": test.deterministic_errors(),  # the mask of ones, beside the MC mean
    }
    estimates = test.estimates
    # one row without dropout (--ensemble-covariance heads of a one-head model): the variance head
    # alone; with dropout, fewer than 2 samples give no covariance a bundle could use
    if mc_samples >= 2 or predictor.ensemble_covariance == "heads":
        calibration = _calibration_set(predictor, test, split, calibration_split)
        metrics["uncertainty"] = _uncertainty_metrics(
            test, calibration, t_err, r_err, covariance_scale, flag_share
        )
        prior = predictor.distance_prior
        metrics["uncertainty"]["distance_prior"] = (
            None
            if prior is None
            else {"variance_per_squared_distance": prior.k, "training_positions": len(prior.positions)}
        )
        scale = metrics["uncertainty"]["covariance_scale"]
        metrics["covariance_scale"] = scale
        metrics["covariance_variants"] = _covariance_variants(
            test, calibration, t_err, r_err, predictor.distance_prior
        )
        estimates = _mc_estimates(
            test.t_samples,
            test.q_samples,
            CovarianceScale(**scale),
            test.log_variances,
            predictor.distance_prior,
        )
    if camera_loss:
        calibrated = "covariance_scale" in metrics
        scale = CovarianceScale(**metrics["covariance_scale"]) if calibrated else None
        clean_std = float(np.median([e.position_std for e in estimates])) if calibrated else 0.0
        metrics["camera_loss"] = _camera_loss(predictor, test.name, scale, clean_std)
    if baseline:
        try:
            metrics["retrieval_baseline"] = predictor.retrieval_baseline(test, metrics)
        except ValueError as exc:  # no training split here: the evaluation stands without it
            predictor.notes.append(f"retrieval baseline skipped: {exc}")
    return Evaluation(
        metrics,
        test.t_gt,
        test.q_gt,
        estimates,
        test.sequences,
        t_err,
        r_err,
        list(predictor.notes),
        test.stamps_ns,
    )


@dataclass
class _SplitResult:
    """Ground truth, MC samples and the unscaled MC estimates of one split."""

    name: str
    dataset: PoseDataset
    t_samples: NDArray[np.float64]
    q_samples: NDArray[np.float64]
    estimates: list[PoseEstimate]  # unscaled; with the variance head's part when it has one
    t_deterministic: NDArray[np.float64]  # (N, 3): the mask of ones
    q_deterministic: NDArray[np.float64]  # (N, 4)
    log_variances: NDArray[np.float64] | None = None  # (N, S, 6) of a variance head

    @property
    def frames(self) -> list[Any]:
        return list(self.dataset.frame_list.frames)

    @property
    def t_gt(self) -> NDArray[np.float64]:
        return self.dataset.frame_list.translations()

    @property
    def q_gt(self) -> NDArray[np.float64]:
        return self.dataset.frame_list.quaternions()

    @property
    def sequences(self) -> NDArray[np.int64]:
        return np.array([f.sequence for f in self.frames])

    @property
    def stamps_ns(self) -> NDArray[np.int64]:
        return np.array([f.stamp_ns for f in self.frames], dtype=np.int64)

    @property
    def t_mean(self) -> NDArray[np.float64]:
        return np.stack([e.translation for e in self.estimates])

    @property
    def q_mean(self) -> NDArray[np.float64]:
        return np.stack([e.quat_xyzw for e in self.estimates])

    @property
    def covariances(self) -> NDArray[np.float64]:
        return np.stack([e.covariance for e in self.estimates])

    def residuals(self) -> NDArray[np.float64]:
        return tangent_residuals(self.t_gt, self.q_gt, self.t_mean, self.q_mean)

    def deterministic_errors(self) -> dict[str, float]:
        return error_summary(*pose_errors(self.t_gt, self.q_gt, self.t_deterministic, self.q_deterministic))


class _SplitPredictor:
    """A checkpoint's model on its device, predicting the splits of one dataset."""

    def __init__(
        self,
        checkpoint: Path,
        data_root: Path | None,
        mc_samples: int,
        device_name: str,
        seed: int,
        skip_bad: bool,
        max_frames: int = 0,
        ensemble: Sequence[Path] = (),
        ensemble_covariance: str = "auto",
        distance_variance: float | None = None,
    ) -> None:
        self.members = [checkpoint, *ensemble]
        self.max_frames = max_frames
        self.model: PoseRegressor | EnsembleRegressor
        self.ensemble_covariance: str | None = None  # an ensemble's, resolved
        if ensemble:
            self.model, checkpoints = load_ensemble(self.members, ensemble_covariance)
            self.ensemble_covariance = self.model.covariance  # auto resolved
            self.trained = checkpoints[0]
            # as many for every member
            mc_samples = ensemble_samples(len(self.members), mc_samples, self.ensemble_covariance)
        else:
            self.trained = load_checkpoint(checkpoint)
            self.model = model_from_checkpoint(self.trained, checkpoint)
            if scored_as_heads(self.model.config, ensemble_covariance):  # heads as members
                self.ensemble_covariance = configure_heads(self.model, ensemble_covariance)
                mc_samples = ensemble_samples(self.model.config.heads, mc_samples, self.ensemble_covariance)
        self.heads = self.trained.model_config.heads
        self.device = resolve_device(device_name)
        self.model.to(self.device)
        self.root = data_root if data_root is not None else Path(self.trained.dataset.root)
        # the first member's, as export's: position variance that grows away from the training path
        self.distance_prior = distance_prior_of(self.trained, data_root, distance_variance)
        self.length_unit = length_unit_of(self.trained.config.data.kind, self.root)
        self.mc_samples, self.seed, self.skip_bad = max(mc_samples, 0), seed, skip_bad
        self.skipped: dict[str, int] = {}
        self.notes: list[str] = []
        self._results: dict[str, _SplitResult] = {}

    def run(self, split: str) -> _SplitResult:
        """Predicts `split`, once per predictor (ValueError: no frames, other cameras, or no readable
        image)."""
        if split not in self._results:
            self._results[split] = self._predict(split)
        return self._results[split]

    def run_without(self, split: str, camera: int) -> _SplitResult:
        """`split` again with camera `camera` (rig index) black in every set, as a covered lens or a
        dead camera reads (not cached: each camera is asked for once)."""
        return self._predict(split, black_camera=camera)

    def _predict(self, split: str, black_camera: int | None = None) -> _SplitResult:
        data = self.trained.config.data
        frames = load_dataset(self.trained.dataset.kind, self.root, split, **data.options)
        frames = subsample_frames(frames.select_cameras(data.cameras), self.max_frames)
        if len(frames) == 0:
            raise ValueError(
                f"split {split!r} of {self.root} has no frames: name a split that has with --split, or "
                "a folder that has it with --data (from-bag --split train/val/test puts a whole bag in one)"
            )
        trained_on = self.trained.rig.names
        if frames.rig.names != trained_on:
            raise ValueError(
                f"{self.root} has cameras {frames.rig.names}, the model was trained on {trained_on}"
            )
        size = (self.model.config.image_width, self.model.config.image_height)
        dataset = PoseDataset(frames, size, preload=False, skip_bad=self.skip_bad)
        if dataset.skipped and black_camera is None:  # the camera-loss runs read the same frames
            self.skipped[split] = len(dataset.skipped)
            self.notes.append(describe_skipped(dataset.skipped, len(frames), split))
        if len(dataset) == 0:
            raise ValueError(f"none of the {len(frames)} frames of split {split!r} has readable images")
        source: CameraSets = dataset if black_camera is None else _CameraBlack(dataset, black_camera)
        t_s, q_s, lv, (t_det, q_det) = predict_with_deterministic(
            self.model, source, self.device, mc_samples=self.mc_samples, seed=self.seed
        )
        estimates = _mc_estimates(t_s, q_s, 1.0, lv, self.distance_prior)
        return _SplitResult(split, dataset, t_s, q_s, estimates, t_det, q_det, lv)

    def retrieval_baseline(self, test: _SplitResult, regression: dict[str, Any]) -> dict[str, Any]:
        """Errors of the nearest-training-frame baseline on `test`'s frames, and the regression's
        median errors as a share of the baseline's (below 1: the regression beats retrieval)."""
        data = self.trained.config.data
        train = load_dataset(self.trained.dataset.kind, self.root, "train", **data.options)
        t, q, searched = retrieve_poses(
            train.select_cameras(data.cameras), test.dataset.frame_list, self.skip_bad
        )
        summary = error_summary(*pose_errors(test.t_gt, test.q_gt, t, q))
        ratios = {
            f"median_{kind}": _ratio(regression[f"median_{kind}"], summary[f"median_{kind}"])
            for kind in ("translation_m", "rotation_deg")
        }
        return {**summary, "training_frames": len(searched), "regression_over_retrieval": ratios}


class _CameraBlack:
    """A dataset's camera sets with one camera's images black (what a covered lens reads)."""

    def __init__(self, dataset: PoseDataset, camera: int) -> None:
        self.dataset, self.camera = dataset, camera

    def __len__(self) -> int:
        return len(self.dataset)

    def images(self, index: int) -> NDArray[np.uint8]:
        images = self.dataset.images(index).copy()
        images[self.camera] = 0
        return images


def _camera_loss(
    predictor: _SplitPredictor, split: str, scale: CovarianceScale | None, clean_position_std: float
) -> dict[str, dict[str, Any]]:
    """Per camera (by name): the errors of `split`'s frames with that camera black in every set,
    and, with a calibration `scale` (MC samples), how the covariance answers: its mean NEES, the
    share of truths inside its 95% ellipsoid and its median position std over the clean split's
    (`clean_position_std`)."""
    report: dict[str, dict[str, Any]] = {}
    for camera, name in enumerate(predictor.trained.rig.names):
        blind = predictor.run_without(split, camera)
        t_err, r_err = pose_errors(blind.t_gt, blind.q_gt, blind.t_mean, blind.q_mean)
        entry: dict[str, Any] = error_summary(t_err, r_err)
        if scale is not None and clean_position_std > 0:
            estimates = _mc_estimates(
                blind.t_samples, blind.q_samples, scale, blind.log_variances, predictor.distance_prior
            )
            scored = consistency(blind.residuals(), np.stack([e.covariance for e in estimates]))
            entry["mean_nees"] = scored["mean_nees"]["6dof"]
            entry["inside_95"] = scored["inside_95"]["6dof"]
            position_std = float(np.median([e.position_std for e in estimates]))
            entry["position_std_ratio"] = position_std / clean_position_std
        report[name] = entry
    return report


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


@dataclass(frozen=True)
class _CalibrationSet:
    """The frames the covariance calibration is fitted on: one split, or several as one
    (`--calib-split val,test`), with a stretch id per frame that is unique across the splits."""

    splits: tuple[str, ...]
    residual_rows: NDArray[np.float64]  # (N, 6)
    covariances: NDArray[np.float64]  # (N, 6, 6), unscaled
    t_samples: NDArray[np.float64]
    q_samples: NDArray[np.float64]
    log_variances: NDArray[np.float64] | None
    blocks: NDArray[np.int64]

    @property
    def name(self) -> str:
        return ",".join(self.splits)

    def residuals(self) -> NDArray[np.float64]:
        return self.residual_rows

    @classmethod
    def of(cls, results: Sequence[_SplitResult]) -> _CalibrationSet:
        blocks, offset = [], 0
        for result in results:
            _, index = np.unique(result.sequences, return_inverse=True)
            blocks.append(index + offset)
            offset += int(index.max()) + 1
        variances = [r.log_variances for r in results if r.log_variances is not None]
        return cls(
            tuple(r.name for r in results),
            np.concatenate([r.residuals() for r in results]),
            np.concatenate([r.covariances for r in results]),
            np.concatenate([r.t_samples for r in results]),
            np.concatenate([r.q_samples for r in results]),
            np.concatenate(variances) if len(variances) == len(results) else None,
            np.concatenate(blocks).astype(np.int64),
        )


def _calibration_set(
    predictor: _SplitPredictor, test: _SplitResult, split: str, calibration_split: str | None
) -> _CalibrationSet:
    """The frames the covariance scale is fitted on: those of the splits `calibration_split` names
    ("val", "val,test") that have frames; the evaluated split itself when it names none (""), or
    when none of them has frames (a dataset imported without val), which a note says."""
    names = calibration_split_names(calibration_split)
    results, missing = [], []
    for name in names:
        try:
            results.append(test if name == split else predictor.run(name))
        except ValueError as exc:
            missing.append(f"{name} ({exc})")
    if missing:
        fallback = "" if results else f"; the covariance scale is fitted on {split} itself (in-sample)"
        note = f"calibration split {', '.join(missing)} left out{fallback}"
        if note not in predictor.notes:  # one note for the several splits of one predictor
            predictor.notes.append(note)
    return _CalibrationSet.of(results or [test])


def _uncertainty_metrics(
    test: _SplitResult,
    calibration: _CalibrationSet,
    t_err: NDArray[np.float64],
    r_err: NDArray[np.float64],
    given: CovarianceScale | None = None,
    flag_share: float = DEFAULT_FLAG_SHARE,
) -> dict[str, Any]:
    """How well the MC covariance predicts the errors, before and after the calibration fitted on
    `calibration` (or the `given` one); the uncertain flag's thresholds suggested to flag
    `flag_share` of the calibration frames."""
    residuals, covs = test.residuals(), test.covariances
    pos_std, rot_std = covariance_stds(covs)
    scale = given or fit_covariance_scales(calibration.residuals(), calibration.covariances)
    calibrated, calibrated_reference = scale.apply(covs), scale.apply(calibration.covariances)
    nees_before = nees_values(residuals, covs)
    nees_after = nees_values(residuals, calibrated)
    after = consistency(residuals, calibrated)
    calibrated_pos_std, calibrated_rot_std = covariance_stds(calibrated)
    return {
        "spearman_position_std_vs_error": spearman(pos_std, t_err),
        "spearman_rotation_std_vs_error": spearman(rot_std, r_err),
        # how far each could move on another draw of the split's trajectories
        "spearman_interval_90": {
            "position": spearman_interval(pos_std, t_err, test.sequences),
            "rotation": spearman_interval(rot_std, r_err, test.sequences),
        },
        # what the same covariances would give if they were exactly right (see its docstring)
        "spearman_if_exact": spearman_if_exact(calibrated),
        # of the calibrated covariance, as the node publishes it and eval-folder / eval-node report
        # it; the raw model's before the calibration
        "median_position_std_m": float(np.median(calibrated_pos_std)),
        "median_rotation_std_deg": float(np.median(calibrated_rot_std)),
        "median_position_std_m_before": float(np.median(pos_std)),
        "median_rotation_std_deg_before": float(np.median(rot_std)),
        "mean_nees_before": float(np.mean(nees_before)),
        "mean_nees_after": float(np.mean(nees_after)),
        "median_nees_before": float(np.median(nees_before)),
        "median_nees_after": float(np.median(nees_after)),
        "nees_expected": 6.0,
        "median_nees_expected": float(chi2.median(6)),
        "covariance_scale": scale.as_mapping(),
        "covariance_scale_fitted_on": calibration.name if given is None else "given",
        # the evaluated frames are among those the scale was fitted on: their NEES is no test of it
        "calibration_in_sample": given is None and test.name in calibration.splits,
        # the fitted calibration scored on stretches it was not fitted on (None: given, or one stretch)
        "calibration_held_out": (
            None
            if given is not None
            else held_out_consistency(calibration.residuals(), calibration.covariances, calibration.blocks)
        ),
        "calibration_frames": len(calibration.blocks),
        "calibration_stretches": len(np.unique(calibration.blocks)),
        "covariance_scale_quantile": CALIBRATION_QUANTILE,  # of the NEES matched to chi2's
        # Calibrated covariance, per block: mean NEES (expected 6, 3, 3), the share of the truths
        # inside the 95% ellipsoid, and the observed coverage of the reliability diagram.
        "mean_nees_after_blocks": after["mean_nees"],
        "inside_95_ellipsoid": after["inside_95"],
        "reliability": after["reliability"],
        # how many successive poses share an error: the covariance inflation an EKF fusing every
        # pose needs (pose_regressor.error_correlation)
        "error_correlation": error_correlation(residuals, calibrated, test.sequences, test.stamps_ns),
        "uncertain_flag": uncertain_flag_report(
            calibrated,
            calibrated_reference,
            t_err,
            r_err,
            flagged_quantile=1.0 - flag_share,
            sequences=test.sequences,
        ),
    }


def _covariance_variants(
    test: _SplitResult,
    calibration: _CalibrationSet,
    t_err: NDArray[np.float64],
    r_err: NDArray[np.float64],
    distance_prior: DistancePrior | None = None,
) -> dict[str, dict[str, float]]:
    """The covariance models side by side on the same samples: the MC spread with one fitted scale
    (the former default), the MC spread with per-group scales and, when the model outputs a
    log-variance (a variance head, the track-shift spread or both), the MC spread plus that
    variance with per-group scales (what bundles of such models use). Each with the model's
    `distance_prior`, as its bundle; with one, also the bundle's covariance without it
    (`without_distance_prior`), to see what it adds."""
    # name -> (log-variance, per-group scales, distance prior)
    variants: dict[str, tuple[bool, bool, DistancePrior | None]] = {}
    if test.t_samples.shape[1] >= 2:  # one row (no dropout, one head) has no spread
        variants = {
            "mc_one_scale": (False, False, distance_prior),
            "mc_per_group": (False, True, distance_prior),
        }
    if test.log_variances is not None:
        variants["mc_log_variance_per_group"] = (True, True, distance_prior)
    if distance_prior is not None:
        variants["without_distance_prior"] = (test.log_variances is not None, True, None)
    residuals, fit_residuals = test.residuals(), calibration.residuals()
    out = {}
    for name, (aleatoric, per_group, prior) in variants.items():
        covs, fit_covs = (
            np.stack([e.covariance for e in _mc_estimates(t, q, 1.0, lv, prior)])
            for t, q, lv in (
                (test.t_samples, test.q_samples, test.log_variances if aleatoric else None),
                (
                    calibration.t_samples,
                    calibration.q_samples,
                    calibration.log_variances if aleatoric else None,
                ),
            )
        )
        if per_group:
            scale = fit_covariance_scales(fit_residuals, fit_covs)
        else:
            scale = CovarianceScale.uniform(fit_covariance_scale(fit_residuals, fit_covs))
        nees_after = nees_values(residuals, scale.apply(covs))
        pos_std, rot_std = covariance_stds(covs)
        out[name] = {
            "spearman_position_std_vs_error": spearman(pos_std, t_err),
            "spearman_rotation_std_vs_error": spearman(rot_std, r_err),
            "mean_nees_after": float(np.mean(nees_after)),
            "median_nees_after": float(np.median(nees_after)),
            "inside_95_ellipsoid": float(np.mean(nees_after <= chi2.ppf(0.95, 6))),
            "covariance_scale_position": scale.position,
            "covariance_scale_rotation": scale.rotation,
            "covariance_exponent_position": scale.position_exponent,
            "covariance_exponent_rotation": scale.rotation_exponent,
        }
    return out


# What write_evaluation writes into its folder.
EVALUATION_FILES = ("metrics.json", "trajectory.png", "error_cdf.png", "error_vs_std.png", "reliability.png")


def write_evaluation(evaluation: Evaluation, out_dir: Path) -> list[Path]:
    """metrics.json and the plots (reliability.png with the uncertainty); returns the written paths."""
    from pose_regressor.evaluate_plots import plot_reliability, plot_trajectory
    from pose_regressor_training.plots import plot_error_cdf, plot_error_vs_std

    ev, m = evaluation, evaluation.metrics
    unit = m.get("length_unit", "m")
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = out_dir / "metrics.json"
    # An earlier run's files go first and metrics.json comes last: export takes the calibration
    # from it, so it must never stand beside plots of another run or before this run's are done.
    for name in EVALUATION_FILES:
        (out_dir / name).unlink(missing_ok=True)
    paths = []
    t_pred = np.stack([e.translation for e in ev.estimates])
    covs = np.stack([e.covariance for e in ev.estimates]) if m.get("uncertainty") else None
    title = (
        f"{m['split']} split: median {m['median_translation_m']:.2f} {unit}, "
        f"{m['median_rotation_deg']:.1f} deg ({m['frames']} frames)"
    )
    paths.append(
        plot_trajectory(
            out_dir / "trajectory.png",
            ev.t_gt,
            t_pred,
            title,
            covs,
            ev.sequences,
            stamps_ns=ev.stamps_ns,
            unit=unit,
        )
    )
    paths.append(
        plot_error_cdf(out_dir / "error_cdf.png", ev.translation_errors, ev.rotation_errors, m["split"], unit)
    )
    if covs is not None:
        paths.append(
            plot_error_vs_std(
                out_dir / "error_vs_std.png",
                ev.translation_errors,
                ev.rotation_errors,
                covs,
                m["uncertainty"],
                unit,
            )
        )
        paths.append(plot_reliability(out_dir / "reliability.png", m["uncertainty"]))
    atomic_write_text(metrics_path, json_text(m))  # export reads it: never a truncated one
    return [metrics_path, *paths]
