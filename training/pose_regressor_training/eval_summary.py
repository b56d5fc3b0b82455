"""The console lines of `pose-train eval-checkpoint` beyond the accuracy: the calibrated
covariance's consistency, the uncertain flag, and the retrieval baseline."""

from __future__ import annotations

from typing import Any


def uncertainty_lines(u: dict[str, Any], length_unit: str = "m") -> list[str]:
    """The calibrated covariance's consistency and the uncertain flag, in two console lines."""
    nees, inside, flag = u["mean_nees_after_blocks"], u["inside_95_ellipsoid"], u["uncertain_flag"]
    rates, params = flag["at_suggested_parameters"], flag["suggested_parameters"]
    auroc = flag["auroc_uncertain_flag"]
    auroc_interval = _interval(flag.get("auroc_uncertain_flag_interval_90"))
    return [
        f"calibrated: spearman(rot std, err) {u['spearman_rotation_std_vs_error']:.2f} "
        f"({spearman_interval_text(u, 'rotation')}; if exact: "
        f"{u['spearman_if_exact']['rotation']:.2f}), mean NEES "
        f"{nees['6dof']:.3g} (pos {nees['position']:.3g}, rot {nees['rotation']:.3g}; ideal 6, 3, 3), "
        f"inside 95% ellipsoid {inside['6dof'] * 100:.1f}% (pos {inside['position'] * 100:.1f}%, "
        f"rot {inside['rotation'] * 100:.1f}%)",
        f"uncertain flag: AUROC {_maybe(auroc, '.2f')}{auroc_interval} "
        f"for {flag['gross_errors']} gross errors (> 3x median); "
        f"at max_position_std {params['max_position_std']:.3g} {length_unit}, max_rotation_std "
        f"{params['max_rotation_std']:.3g} rad: TPR {_maybe(rates['true_positive_rate'], '.2f')}, "
        f"FPR {_maybe(rates['false_positive_rate'], '.2f')}; "
        + operating_points_text(flag.get("operating_points", [])),
        *([line] if (line := correlation_line(u.get("error_correlation"))) else []),
    ]


def correlation_line(correlation: dict[str, Any] | None) -> str | None:
    """How many successive poses share an error, and the node's covariance_inflation for an EKF
    that fuses every pose; None where the split has no trajectories to measure it on."""
    if not correlation or correlation["frames"] is None:
        return None
    seconds = correlation["seconds"]
    span = f"{correlation['frames']:.1f} frames" + (f", {seconds:.2f} s" if seconds is not None else "")
    bound = " at least" if correlation["truncated"] else ""
    return (
        f"errors alike over{bound} {span} of a trajectory (lag-1 correlation {correlation['lag1']:.2f}): "
        f"an EKF fusing every pose at this rate needs covariance_inflation "
        f"{correlation['suggested_covariance_inflation']:.3g}{' or more' if bound else ''}"
    )


def operating_points_text(points: list[dict[str, Any]]) -> str:
    """`flagging 5% / 10% / 20% of these frames catches 42% / 63% / 83% of the gross errors`."""
    if not points or points[0]["true_positive_rate"] is None:
        return "no gross errors to catch"
    shares = " / ".join(f"{point['share'] * 100:g}%" for point in points)
    caught = " / ".join(f"{point['true_positive_rate'] * 100:.0f}%" for point in points)
    return f"flagging {shares} of these frames catches {caught} of the gross errors"


def calibration_line(u: dict[str, Any]) -> str | None:
    """What the calibration was fitted on and how it holds on stretches left out of its fit, in one
    console line (None for a given calibration)."""
    check = u.get("calibration_held_out")
    if u.get("covariance_scale_fitted_on") == "given":
        return None
    frames, stretches = u["calibration_frames"], u["calibration_stretches"]
    fitted = (
        f"calibration fitted on {u['covariance_scale_fitted_on']} ({frames} frames, {stretches} "
        f"stretch{'es' if stretches != 1 else ''})"
    )
    if u.get("calibration_in_sample"):
        fitted += ", the evaluated frames among them: the NEES above is in-sample"
    if check is None:
        return (
            f"{fitted}; with one stretch, how it holds on others cannot be checked: calibrate the "
            "bundle you ship on more (--calib-split val,test)"
        )
    per_fold = check["mean_nees_per_fold"]
    return (
        f"{fitted}; on stretches held out of the fit ({check['folds']} folds): mean NEES "
        f"{check['mean_nees']:.3g} (ideal 6), inside 95% ellipsoid {check['inside_95'] * 100:.1f}%, "
        f"per fold {min(per_fold):.3g}-{max(per_fold):.3g}"
    )


# A calibration whose mean NEES on its own held-out stretches leaves this band is off by 2x or more
# on stretches of the path it was not fitted on (issue 16's band for the mean NEES).
HELD_OUT_NEES_BAND = (3.0, 12.0)


def calibration_warning(summary: dict[str, Any]) -> str | None:
    """What `export` says when the calibration it ships is fitted on one stretch of the path, or
    misses the NEES band on the stretches held out of its fit; `summary` is the bundle's
    ``provenance.eval_metrics``. None when neither (or a summary from before these were kept)."""
    if summary.get("covariance_scale_fitted_on") == "given":  # --calibration: fitted elsewhere
        return None
    stretches = summary.get("calibration_stretches")
    check = summary.get("calibration_held_out")
    if stretches == 1:
        return (
            f"the covariance calibration was fitted on one stretch of the path "
            f"({summary.get('calibration_frames', '?')} frames): how it holds elsewhere is unchecked, "
            "and on 252 bonsai photographs such a fit put the test NEES at 8-13x the ideal; fit it on "
            "more stretches (pose-train eval-checkpoint --calib-split val,test, then export --metrics)"
        )
    mean_nees = check.get("mean_nees") if isinstance(check, dict) else None
    if isinstance(mean_nees, int | float) and not isinstance(mean_nees, bool):
        low, high = HELD_OUT_NEES_BAND
        if not low <= mean_nees <= high:
            return (
                f"on stretches held out of its fit the covariance calibration gave a mean NEES of "
                f"{mean_nees:.3g} (ideal 6): on new stretches of the path expect its "
                "covariance to be off by as much; more calibration stretches (--calib-split val,test) "
                "or more training data narrow it"
            )
    return None


def spearman_interval_text(u: dict[str, Any], group: str) -> str:
    """The Spearman's 90% interval over the split's trajectories, as "90%: 0.35-0.49"."""
    bounds = u["spearman_interval_90"][group]
    return "90%: n/a" if bounds is None else f"90%: {bounds[0]:.2f}-{bounds[1]:.2f}"


def _interval(bounds: list[float] | None) -> str:
    return "" if bounds is None else f" (90%: {bounds[0]:.2f}-{bounds[1]:.2f})"


def retrieval_line(m: dict[str, Any], b: dict[str, Any]) -> str:
    """The retrieval baseline against the regression, in one console line."""
    ratios, unit = b["regression_over_retrieval"], m.get("length_unit", "m")
    return (
        f"retrieval baseline (nearest training frame): median {b['median_translation_m']:.3f} {unit} "
        f"{b['median_rotation_deg']:.2f} deg; regression {m['median_translation_m']:.3f} {unit} "
        f"{m['median_rotation_deg']:.2f} deg = {_maybe(ratios['median_translation_m'], '.2f')}x, "
        f"{_maybe(ratios['median_rotation_deg'], '.2f')}x the baseline's"
    )


def _maybe(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def camera_loss_line(report: dict[str, dict[str, Any]], unit: str) -> str:
    """One line of `--camera-loss`: each camera's errors when it is black, and how the calibrated
    covariance answers (mean NEES, ideal 6; position std against the clean frames')."""
    parts = []
    for name, entry in report.items():
        text = f"{name} {entry['median_translation_m']:.3f} {unit} {entry['median_rotation_deg']:.2f} deg"
        if "mean_nees" in entry:
            text += f" (NEES {entry['mean_nees']:.3g}, position std x{entry['position_std_ratio']:.2f})"
        parts.append(text)
    return "camera loss, each camera black in every frame: " + ", ".join(parts)
