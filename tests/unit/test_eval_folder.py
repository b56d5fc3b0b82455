"""`pose-regressor eval-folder`: a bundle scored on a dataset folder's split, torch-free, and the
one-line refusals of a missing folder, an unknown or empty split and cameras that do not match."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from pose_regressor import cli
from pose_regressor.dataset_folder import FrameRecord, image_path, write_frames
from pose_regressor.localizer import Localizer
from pose_regressor.metrics import pose_errors
from pose_regressor.uncertainty_metrics import spearman
from tests.unit.bundle_fixtures import make_bundle
from tests.unit.folder_fixtures import SPLITS, Q, write_folder


def test_eval_folder_scores_the_split_with_the_bundles_cameras(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = make_bundle(tmp_path / "bundle")  # cameras front, rear
    data = write_folder(tmp_path / "data", ("rear", "side", "front"))
    out = tmp_path / "eval"
    argv = ["eval-folder", "--bundle", str(bundle.path), "--data", str(data), "--out", str(out)]
    # one rear image at another size: resized, as the node does, and said once
    rear = image_path(data, "rear", 4)
    cv2.imwrite(str(rear), cv2.resize(cv2.imread(str(rear)), (32, 24)))
    assert cli.main([*argv, "--backend", "onnxruntime", "--mc-samples", "0"]) == 0
    printed = capsys.readouterr()
    line = printed.out.strip()
    assert printed.err.splitlines() == [
        "pose-regressor eval-folder: warning: 1 of 4 images of camera rear are 32x24, the bundle's 16x12: "
        "resized, as the node does with resize_mismatched: true",
        "pose-regressor eval-folder: warning: with 0 MC sample(s) and no variance head, distance prior or "
        "ensemble, every covariance is the floor: the uncertainty figures say nothing (use the bundle's "
        "mc_samples, 8)",
    ]
    assert line.startswith(f"eval-folder: 4 test frames of {data}: median ") and "\n" not in line
    metrics = json.loads((out / "metrics.json").read_text())
    assert (out / "trajectory.png").stat().st_size > 10_000 and (
        out / "reliability.png"
    ).stat().st_size > 10_000
    assert metrics["frames"] == 4 and metrics["cameras"] == ["front", "rear"] and metrics["mc_samples"] == 0

    # The same frames through the Localizer by hand, in the bundle's camera order.
    localizer = Localizer(bundle.path, backend="onnxruntime", mc_samples=0)
    test = [i for i, s in enumerate(SPLITS) if s == "test"]
    estimates = [
        localizer.localize([cv2.imread(str(image_path(data, c, i)))[:, :, ::-1] for c in ("front", "rear")])
        for i in test
    ]
    t_gt = np.array([[0.5 * i, 0.1 * i, 0.0] for i in test])
    t_err, r_err = pose_errors(
        t_gt,
        np.tile(Q, (4, 1)),
        np.stack([e.translation for e in estimates]),
        np.stack([e.quat_xyzw for e in estimates]),
    )
    assert metrics["median_translation_m"] == pytest.approx(float(np.median(t_err)))
    assert metrics["median_rotation_deg"] == pytest.approx(float(np.median(r_err)))
    # The node's flag at the thresholds in force with its parameters unset: this bundle suggests
    # none, so the node's defaults (1 m, 0.35 rad).
    flag = metrics["uncertain_flag"]
    assert flag["thresholds"] == {"max_position_std": 1.0, "max_rotation_std": 0.35}
    assert flag["flagged"] == sum(e.position_std > 1.0 or e.rotation_std > 0.35 for e in estimates)
    assert set(metrics["inside_95_ellipsoid"]) == {"6dof", "position", "rotation"}
    # poses.csv: the same poses, frame by frame, with their truth, errors, flag and covariance.
    rows = list(csv.DictReader((out / "poses.csv").open()))
    assert [int(r["index"]) for r in rows] == test
    for row, e, te, re_, tg in zip(rows, estimates, t_err, r_err, t_gt, strict=True):
        assert [float(row[k]) for k in ("tx", "ty", "tz")] == pytest.approx(e.translation, rel=1e-8)
        assert [float(row[k]) for k in ("gt_tx", "gt_ty", "gt_tz")] == pytest.approx(tg)
        assert float(row["position_error"]) == pytest.approx(te, rel=1e-6, abs=1e-9)
        assert float(row["rotation_error_deg"]) == pytest.approx(re_, rel=1e-6, abs=1e-7)
        assert float(row["position_std"]) == pytest.approx(e.position_std, rel=1e-6)
        covariance = np.array([float(row[f"cov_{i}"]) for i in range(36)]).reshape(6, 6)
        np.testing.assert_allclose(covariance, e.covariance, rtol=1e-7)
    assert sum(int(r["uncertain"]) for r in rows) == flag["flagged"]
    # Without MC samples every std is the floor: no ranking, written as null (strict JSON) and
    # printed as n/a.
    assert np.isnan(spearman(np.array([e.position_std for e in estimates]), t_err))
    assert metrics["spearman_position_std_vs_error"] is None
    assert "Spearman(std, error) position n/a rotation n/a" in line


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no-folder", "dataset folder {data}x does not exist"),
        ("bad-split", "split must be one of train, val, test, got 'tset'"),
        ("empty-split", "the val split of {data} has no frames"),
        (
            "cameras",
            "the bundle's cameras front, rear do not match {data}'s rig (left, right): front, rear missing",
        ),
    ],
)
def test_eval_folder_refuses_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, message: str
) -> None:
    bundle = make_bundle(tmp_path / "bundle")
    data = write_folder(tmp_path / "data", ("left", "right") if case == "cameras" else ("front", "rear"))
    if case == "empty-split":
        write_frames(data, [FrameRecord(0, 0, "test", 0, np.zeros(3), Q)])
    argv = [
        "eval-folder",
        "--bundle",
        str(bundle.path),
        "--out",
        str(tmp_path / "eval"),
        "--backend",
        "onnxruntime",
    ]
    argv += ["--data", f"{data}x" if case == "no-folder" else str(data)]
    argv += {"bad-split": ["--split", "tset"], "empty-split": ["--split", "val"]}.get(case, [])
    # an earlier run's results in --out go (they would pass for this run's), the user's files stay
    (tmp_path / "eval").mkdir()
    for name in ("metrics.json", "poses.csv", "notes.txt"):
        (tmp_path / "eval" / name).write_text("earlier")
    assert cli.main(argv) == 2
    assert sorted(p.name for p in (tmp_path / "eval").iterdir()) == ["notes.txt"]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("pose-regressor eval-folder: error: ")
    assert message.format(data=data) in err
    assert not (tmp_path / "eval" / "metrics.json").exists()


def test_a_folder_whose_camera_is_mounted_or_calibrated_otherwise_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from scipy.spatial.transform import Rotation

    from pose_regressor.rig import PinholeIntrinsics, Rig, RigCamera
    from tests.unit.folder_fixtures import CAMERA_SIZE

    # trained with the rear camera facing backwards through a 60-degree lens; the folder's faces
    # forwards through a 90-degree one (as write_folder's cameras all do)
    trained = Rig(
        (
            RigCamera("front", PinholeIntrinsics.from_hfov(*CAMERA_SIZE, 90.0)),
            RigCamera(
                "rear",
                PinholeIntrinsics.from_hfov(*CAMERA_SIZE, 60.0),
                rotation_xyzw=Rotation.from_euler("z", 180, degrees=True).as_quat(),
            ),
        )
    )
    bundle = make_bundle(tmp_path / "bundle", rig=trained)
    data = write_folder(tmp_path / "data", ("rear", "front"))
    argv = ["eval-folder", "--bundle", str(bundle.path), "--data", str(data), "--out", str(tmp_path / "e")]
    assert cli.main([*argv, "--backend", "onnxruntime"]) == 0
    warnings = capsys.readouterr().err.splitlines()
    assert (
        "pose-regressor eval-folder: warning: camera rear: mounted 180.0 deg turned and 0.000 m away from "
        "where it was in training" in warnings
    )
    assert any(
        "camera rear: the folder's intrinsics fx 8.0 differs from the bundle's 13.9" in w for w in warnings
    )
    assert not any("camera front" in w for w in warnings)  # as trained
