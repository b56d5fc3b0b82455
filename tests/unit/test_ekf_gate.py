"""training/experiments/ekf_gate.py: robot_localization's gate rule at its threshold, an outlier
refused while the filter keeps to the truth, and the script on an eval-folder poses.csv."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

SCRIPT = Path(__file__).resolve().parents[2] / "training" / "experiments" / "ekf_gate.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ekf_gate", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["ekf_gate"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


ekf_gate = load_script()
STILL = ekf_gate.OdometryNoise(0.0, 0.0, 0.0)  # odometry without noise: only its 1e-8 m² floor


def trajectory(offsets: list[float], variance: float = 0.01**2, frames: int = 2) -> object:
    """A robot standing at the origin; pose k is offset along x by offsets[k]."""
    truth = np.zeros((frames, 3))
    poses = truth.copy()
    poses[:, 0] = offsets
    identity = Rotation.from_quat(np.tile([0.0, 0.0, 0.0, 1.0], (frames, 1)))
    return ekf_gate.Trajectory(
        truth_t=truth,
        truth_r=identity,
        pose_t=poses,
        pose_r=identity,
        covariance=np.tile(np.eye(6) * variance, (frames, 1, 1)),
        uncertain=np.zeros(frames, dtype=bool),
        position_error=np.abs(np.asarray(offsets, dtype=float)),
        rotation_error_deg=np.zeros(frames),
    )


@pytest.mark.parametrize(("sigmas", "refused"), [(4.9, False), (5.1, True)])
def test_the_gate_refuses_at_the_threshold_as_robot_localization_does(sigmas: float, refused: bool) -> None:
    # From the truth (position variance 0.05²), fused with the first pose (0.01², on the truth),
    # then the odometry's floor 1e-8: the innovation of the second pose is its offset, with the
    # variance of the state plus the pose's own.
    state = 1 / (1 / 0.05**2 + 1 / 0.01**2) + 1e-8
    s = np.sqrt(state + 0.01**2)
    run = ekf_gate.run_filter(trajectory([0.0, sigmas * s]), STILL, 5.0, "truth", np.random.default_rng(0))
    assert run.refused.tolist() == [False, refused]


def test_an_outlier_is_refused_and_the_filter_keeps_to_the_truth() -> None:
    offsets = [0.0] * 10
    offsets[6] = 3.0  # a confident pose 3 m off (std 1 cm)
    path = trajectory(offsets, frames=10)
    gated = ekf_gate.run_filter(path, STILL, 5.0, "truth", np.random.default_rng(0))
    assert gated.refused.tolist() == [i == 6 for i in range(10)]
    assert gated.filter_position_error.max() < 1e-3  # the odometry floor: 1e-4 m a step
    # Without a gate the filter jumps most of the way to it.
    ungated = ekf_gate.run_filter(path, STILL, np.inf, "truth", np.random.default_rng(0))
    assert not ungated.refused.any() and ungated.filter_position_error[6] > 0.1


def test_the_filter_follows_the_true_motion_with_exact_odometry() -> None:
    # A robot turning while it moves: with noiseless odometry and exact poses the filter stays on it.
    frames = 30
    yaw = np.linspace(0.0, np.pi, frames)
    truth_r = Rotation.from_euler("z", yaw[:, None])
    truth_t = np.stack([np.cos(yaw), np.sin(yaw), 0.1 * yaw], axis=1)
    path = ekf_gate.Trajectory(
        truth_t=truth_t,
        truth_r=truth_r,
        pose_t=truth_t.copy(),
        pose_r=truth_r,
        covariance=np.tile(np.eye(6) * 1e-4, (frames, 1, 1)),
        uncertain=np.zeros(frames, dtype=bool),
        position_error=np.zeros(frames),
        rotation_error_deg=np.zeros(frames),
    )
    run = ekf_gate.run_filter(path, STILL, 5.0, "first_pose", np.random.default_rng(0))
    assert not run.refused.any() and run.filter_position_error.max() < 1e-3


def test_the_script_reads_eval_folder_poses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    header = (
        "index,sequence,stamp_ns,tx,ty,tz,qx,qy,qz,qw,gt_tx,gt_ty,gt_tz,gt_qx,gt_qy,gt_qz,gt_qw,"
        "position_error,rotation_error_deg,position_std,rotation_std_deg,uncertain,"
        + ",".join(f"cov_{i}" for i in range(36))
    )
    covariance = ",".join(str(v) for v in (np.eye(6) * 1e-4).ravel())
    rows = []
    for i in range(8):
        offset = 2.0 if i == 5 else 0.01 * (i % 2)  # one gross error among small ones
        flagged = int(i == 5)
        rows.append(
            f"{i},0,{i * 100_000_000},{0.1 * i + offset},0,0,0,0,0,1,{0.1 * i},0,0,0,0,0,1,"
            f"{offset},0.5,0.01,0.5,{flagged},{covariance}"
        )
    poses = tmp_path / "poses.csv"
    poses.write_text("\n".join([header, *rows]) + "\n")
    out = tmp_path / "gate.json"
    assert ekf_gate.main(["--poses", str(poses), "--json", str(out)]) == 0
    result = json.loads(out.read_text())[str(poses)]
    assert result["gross_errors"] == 1 and result["flag_catches"] == 1.0
    assert result["truth"]["gate_catches"] == 1.0
    assert "| poses |" in capsys.readouterr().out
    (tmp_path / "bad.csv").write_text("index,sequence\n1,0\n")
    assert ekf_gate.main(["--poses", str(tmp_path / "bad.csv")]) == 2
