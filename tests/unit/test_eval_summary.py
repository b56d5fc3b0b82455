"""What eval and export say about the covariance calibration (pose_regressor_training.eval_summary)."""

from __future__ import annotations

from typing import Any

import pytest

from pose_regressor_training.eval_summary import calibration_line, calibration_warning


def uncertainty(stretches: int, held_out: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "covariance_scale_fitted_on": "val",
        "calibration_frames": 25 * stretches,
        "calibration_stretches": stretches,
        "calibration_held_out": held_out,
    }


HELD_OUT = {
    "blocks": 3,
    "folds": 3,
    "mean_nees": 15.9,
    "inside_95": 0.692,
    "mean_nees_per_fold": [1.05, 2.0, 44.8],
}


def test_the_console_line_says_what_the_calibration_was_fitted_on_and_how_it_held() -> None:
    assert calibration_line(uncertainty(3, HELD_OUT)) == (
        "calibration fitted on val (75 frames, 3 stretches); on stretches held out of the fit (3 folds): "
        "mean NEES 15.9 (ideal 6), inside 95% ellipsoid 69.2%, per fold 1.05-44.8"
    )
    one = calibration_line(uncertainty(1, None))
    assert one is not None and "(25 frames, 1 stretch); with one stretch" in one
    assert calibration_line({"covariance_scale_fitted_on": "given"}) is None


@pytest.mark.parametrize(
    ("summary", "expected"),
    [
        # one stretch: unchecked, and what to do
        (uncertainty(1, None), "fitted on one stretch of the path (25 frames)"),
        # held out far from the band, either way
        (uncertainty(3, HELD_OUT), "gave a mean NEES of 15.9 (ideal 6)"),
        (uncertainty(3, {**HELD_OUT, "mean_nees": 1.2}), "gave a mean NEES of 1.2 (ideal 6)"),
        (uncertainty(3, {**HELD_OUT, "mean_nees": 2}), "gave a mean NEES of 2 (ideal 6)"),  # JSON int
        # inside the band, or nothing to judge by (a bundle exported before these were kept)
        (uncertainty(80, {**HELD_OUT, "mean_nees": 5.91}), None),
        (uncertainty(3, {**HELD_OUT, "mean_nees": 12.0}), None),
        ({}, None),
        (uncertainty(3, {**HELD_OUT, "mean_nees": True}), None),
        (uncertainty(3, {**HELD_OUT, "mean_nees": "15.9"}), None),
        # a calibration given to eval (--calibration) was fitted elsewhere: its frames are not these
        ({**uncertainty(1, None), "covariance_scale_fitted_on": "given"}, None),
    ],
)
def test_export_warns_of_a_calibration_it_cannot_vouch_for(
    summary: dict[str, Any], expected: str | None
) -> None:
    warning = calibration_warning(summary)
    if expected is None:
        assert warning is None
    else:
        assert warning is not None and expected in warning and "--calib-split val,test" in warning
