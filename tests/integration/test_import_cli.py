"""`pose-train import` as the real command (its own process) on each input format (issue 16, item 4)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pose_regressor.bundle import load_bundle
from pose_regressor.pose import canonical_hemisphere
from tests.unit.importer_fixtures import (
    SynthCameraPoses,
    imported_camera_poses,
    render_synth,
    write_colmap_binary,
    write_colmap_text,
    write_transforms,
    write_tum,
)

TRAIN = [sys.executable, "-m", "pose_regressor_training.cli"]


def test_import_command_on_every_format(tmp_path: Path, synth: SynthCameraPoses) -> None:
    intr = synth.intrinsics
    write_colmap_text(synth, tmp_path / "colmap_text")
    write_colmap_binary(synth, tmp_path / "colmap_bin")
    write_transforms(synth, tmp_path / "ns")
    write_tum(synth, tmp_path / "tum")
    cases = {
        "colmap_text": ["colmap", tmp_path / "colmap_text"],
        "colmap_bin": ["colmap", tmp_path / "colmap_bin" / "sparse" / "0"],
        "nerfstudio": ["nerfstudio", tmp_path / "ns" / "transforms.json"],
        "tum": ["tum", tmp_path / "tum", "--intrinsics", intr.fx, intr.fy, intr.cx, intr.cy],
    }
    procs = {
        name: subprocess.Popen(
            [*TRAIN, "import", *map(str, args), "--out", str(tmp_path / f"out_{name}"), "--scale", "2"],
            env=dict(os.environ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, args in cases.items()
    }
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, (name, stderr)
        assert "imported 12 frames" in stdout and "scale: 2 m per input unit" in stdout, stdout
        t, q, splits, intrinsics = imported_camera_poses(tmp_path / f"out_{name}")
        np.testing.assert_allclose(t, 2 * synth.translations, rtol=0, atol=1e-9)
        np.testing.assert_allclose(canonical_hemisphere(q), canonical_hemisphere(synth.quats_xyzw), atol=1e-9)
        assert intrinsics == intr
        # the default for 12 frames: one block per frame, 5 and 10 test, 6 and 11 val
        assert splits == ["train"] * 4 + ["test", "val"] + ["train"] * 3 + ["test", "val", "train"]


def test_interrupted_import_leaves_nothing(tmp_path: Path, synth: SynthCameraPoses) -> None:
    """Ctrl-C while images are being written: exit 130, one line, no staging folder left behind."""
    path = write_transforms(synth, tmp_path / "ns")
    data = json.loads(path.read_text())
    # 4800 frames, each its own image file (hard links: an image named twice is refused)
    images = tmp_path / "ns" / "images"
    frames = []
    for copy in range(400):
        for frame in data["frames"]:
            name = f"c{copy}_{Path(frame['file_path']).name}"
            (source,) = images.glob(f"{Path(frame['file_path']).name}.*")
            os.link(source, images / f"{name}{source.suffix}")
            frames.append({**frame, "file_path": f"images/{name}"})
    data["frames"] = frames
    path.write_text(json.dumps(data))
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [*TRAIN, "import", "nerfstudio", str(path), "--out", str(out), "--quiet"],
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 90
    while not list(tmp_path.glob(".out.partial-*/images/camera/000010.png")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert stderr == "pose-train import: interrupted (SIGINT)\n"
    assert not out.exists() and not list(tmp_path.glob(".out.*"))


def test_an_import_without_a_scale_trains_evaluates_and_exports_in_its_own_units(
    tmp_path: Path, synth: SynthCameraPoses, ros_env: dict[str, str]
) -> None:
    """mono_small_cnn.yaml on an imported set, through fit, eval, export, eval-folder and (without
    a scale) the node: without --scale every position and error says "units", with it "m"."""
    path = write_transforms(synth, tmp_path / "ns")
    small = ["model.image_width=32", "model.image_height=24", "optim.batch_size=4", "tensorboard=false"]
    for scale, unit in (([], "units"), (["--scale", "2"], "m")):
        data, run, bundle = tmp_path / f"data_{unit}", tmp_path / f"run_{unit}", tmp_path / f"bundle_{unit}"
        steps = [
            ["import", "nerfstudio", str(path), "--out", str(data), "--quiet", *scale],
            ["fit", "--config", "training/configs/mono_small_cnn.yaml", "--out", str(run), "--quiet",
             f"data.root={data}", "optim.epochs=1", *small],
            ["eval-checkpoint", "--checkpoint", str(run / "best.pt"), "--split", "test"],
            ["export", "--checkpoint", str(run / "best.pt"), "--out", str(bundle)],
        ]  # fmt: skip
        outputs, errors = [], []
        for step in steps:
            result = subprocess.run([*TRAIN, *step], capture_output=True, text=True, timeout=300, check=False)
            assert result.returncode == 0, (step[0], result.stderr[-2000:])
            outputs.append(result.stdout)
            errors.append(result.stderr)
        fit_out, eval_out, export_out = outputs[1:]
        # positions that are not metres would be read as metres by ROS: export says so
        assert ("trained on positions in its input's own units, not metres" in errors[3]) == (unit == "units")
        assert "fit: best epoch 1: val median " in fit_out and f" {unit}, " in fit_out, fit_out
        eval_line = next((line for line in eval_out.splitlines() if line.startswith("eval test: ")), "")
        assert f" {unit} " in eval_line, eval_out
        assert "retrieval baseline (nearest training frame): median " in eval_out and f" {unit} " in eval_out
        assert f"within 0.25 {unit}, 2 deg: " in eval_out, eval_out
        # the mono config scores without dropout (model.covariance: heads), into eval_heads_test
        metrics = json.loads((run / "eval_heads_test" / "metrics.json").read_text())
        assert metrics["ensemble_covariance"] == "heads" and metrics["mc_samples"] == 1
        assert metrics["length_unit"] == unit
        folder = subprocess.run(
            [sys.executable, "-m", "pose_regressor.cli", "eval-folder", "--bundle", str(bundle),
             "--data", str(data), "--out", str(tmp_path / f"folder_{unit}")],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert folder.returncode == 0, folder.stderr[-2000:]
        assert f"% within 0.25 {unit} 2 deg" in folder.stdout, folder.stdout
        # the config's distance prior (model.position_distance_variance: 1) travels with the bundle:
        # the training positions, and ONNX Runtime on the robot side scores as eval-checkpoint did
        trained_on = (data / "frames.csv").read_text().count(",train,")
        assert metrics["uncertainty"]["distance_prior"] == {
            "variance_per_squared_distance": 1.0,
            "training_positions": trained_on,
        }
        shipped = load_bundle(bundle)
        assert shipped.distance_prior is not None and shipped.distance_prior.k == 1.0
        assert len(shipped.distance_prior.positions) == trained_on
        assert "distance prior: position variance + 1 x" in export_out, export_out
        robot = json.loads((tmp_path / f"folder_{unit}" / "metrics.json").read_text())
        assert robot["mean_nees"] == pytest.approx(metrics["uncertainty"]["mean_nees_after"], rel=1e-4)
        assert "without_distance_prior" in metrics["covariance_variants"]
        assert "distance prior: position variance + 1 x (distance to the nearest of " in eval_out, eval_out
        if unit == "units":
            assert " m " not in fit_out.splitlines()[-2] and " m " not in eval_line
            # The node on 12 test sets of a longer flight (the 2 test frames of `data` are too few:
            # one set lost to DDS discovery would fail eval-node's delivery check).
            longer = tmp_path / "longer"
            write_transforms(render_synth(tmp_path / "render", frames=60), longer)
            bag, node_out = tmp_path / "bag", tmp_path / "node"
            node = subprocess.run(
                [*TRAIN, "import", "nerfstudio", str(longer), "--out", str(longer / "data"), "--quiet"],
                capture_output=True, text=True, timeout=120, check=False,
            )  # fmt: skip
            assert node.returncode == 0, node.stderr[-2000:]
            node = subprocess.run(
                [*TRAIN, "to-bag", "--data", str(longer / "data"), "--split", "test", "--out", str(bag)],
                capture_output=True, text=True, timeout=120, check=False,
            )  # fmt: skip
            assert node.returncode == 0, node.stderr[-2000:]
            node = subprocess.run(
                [sys.executable, "-m", "pose_regressor.cli", "eval-node", "--bag", str(bag),
                 "--bundle", str(bundle), "--out", str(node_out)],
                env=ros_env, capture_output=True, text=True, timeout=180, check=False,
            )  # fmt: skip
            assert node.returncode == 0, node.stderr[-2000:]
            summary = next(line for line in node.stdout.splitlines() if " poses for " in line)
            assert " units " in summary and " m " not in summary, summary
            assert json.loads((node_out / "metrics.json").read_text())["length_unit"] == "units"
            assert "uncertain flag: position std > " not in export_out or " units or rotation" in export_out


@pytest.mark.parametrize("case", ["tum_stamp_1e30", "nerfstudio_angle_0"])
def test_inputs_that_raised_a_traceback_are_one_line(
    tmp_path: Path, synth: SynthCameraPoses, case: str
) -> None:
    """Found by an adversarial sweep: an OverflowError and a ZeroDivisionError escaped as tracebacks."""
    intr = synth.intrinsics
    if case == "tum_stamp_1e30":
        folder = write_tum(synth, tmp_path / "in")
        gt = folder / "groundtruth.txt"
        gt.write_text(gt.read_text() + "1e30 0 0 0 0 0 0 1\n")
        args = ["tum", str(folder), "--intrinsics", *map(str, (intr.fx, intr.fy, intr.cx, intr.cy))]
        expected = (
            f"{gt}:15: timestamp must be within ±9223372036 s (nanoseconds in an int64, up to the year 2262)"
        )
    else:
        path = write_transforms(synth, tmp_path / "in")
        data = json.loads(path.read_text())
        del data["fl_x"], data["fl_y"]
        data["camera_angle_x"] = 0
        path.write_text(json.dumps(data))
        args = ["nerfstudio", str(path)]
        expected = f"{path}: camera_angle_x must be in radians, between 0 and pi (exclusive), got 0"
    out = tmp_path / "out"
    result = subprocess.run(
        [*TRAIN, "import", *args, "--out", str(out)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("pose-train import: error: ") and result.stderr.count("\n") == 1, (
        result.stderr
    )
    assert expected in result.stderr, result.stderr
    assert not out.exists() and not list(tmp_path.glob(".out.*"))
