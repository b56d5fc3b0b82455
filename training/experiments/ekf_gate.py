"""Would an EKF's outlier gate catch what the uncertain flag misses? Poses fused with odometry.

    python training/experiments/ekf_gate.py --poses EVAL/poses.csv [OTHER/poses.csv ...]
        [--drift 0.02] [--rotation-drift-deg 1.0] [--threshold 5.0] [--gross-from EVAL/poses.csv]

The docs send what the covariance does not see (a moved box, a place never trained on) to
robot_localization's Mahalanobis gate (`pose0_rejection_threshold` in config/ekf_map.yaml). This
script measures that claim on `pose-regressor eval-folder`'s poses.csv (the bundle's poses with their
truth and calibrated covariance), without ROS: each trajectory (`sequence`) is replayed through a
6-DoF error-state Kalman filter that predicts with odometry and updates with each localizer pose,
gated as robot_localization's `FilterBase::checkMahalanobisThreshold` does (a measurement is refused
when its squared Mahalanobis distance under the innovation covariance reaches threshold²).

The odometry is simulated from the truth: each frame-to-frame motion in the robot's frame, with
Gaussian noise of `--drift` × the step length on each translation axis and `--rotation-drift-deg`
per metre travelled (plus 0.05° a step) on each rotation axis; the filter knows that noise model,
its best case. The pose covariance is the one in poses.csv (rotations about the fixed map axes), times
`--inflation` (the node's `covariance_inflation`);
robot_localization reads roll/pitch/yaw, a linear change of coordinates that leaves the Mahalanobis
distance as it is to first order. Two starts: from the truth (a robot localized before it reaches
the changed place) and from the first localizer pose with its covariance (one that starts there).

Per input: the share of gross errors (position or rotation error above `--gross-factor` × the
median of `--gross-from`, default the first input: the familiar frames) the gate refuses, the share
of the other poses it refuses, the same for the node's uncertain flag and for both together, and
the filter's median and 95th-percentile position error against the localizer's own, and the share
of truths inside the filter's 95% position ellipsoid (is what the EKF tells Nav2 honest?). A filter
pulled off by accepted outliers shows up in the last columns. Prints a Markdown table; --json
writes the numbers.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy.spatial.transform import Rotation
from scipy.stats import chi2

FloatArray = NDArray[np.float64]
STEP_ROTATION_NOISE_DEG = 0.05  # a floor on the odometry's rotation noise a step, even standing still
START_STD = (0.05, np.radians(1.0))  # the start from the truth: 5 cm, 1 degree
STARTS = ("truth", "first_pose")
CHI2_95_3DOF = float(chi2.ppf(0.95, 3))


@dataclass(frozen=True)
class Trajectory:
    """One sequence of poses.csv in stamp order."""

    truth_t: FloatArray  # (N, 3)
    truth_r: Rotation  # N rotations
    pose_t: FloatArray
    pose_r: Rotation
    covariance: FloatArray  # (N, 6, 6): x y z, rotations about the map axes
    uncertain: NDArray[np.bool_]
    position_error: FloatArray
    rotation_error_deg: FloatArray


@dataclass(frozen=True)
class OdometryNoise:
    drift: float  # translation std per axis, as a share of the step length
    rotation_per_metre: float  # rad of rotation std per axis per metre travelled
    rotation_per_step: float  # rad

    def covariance(self, step_length: float) -> FloatArray:
        translation = (self.drift * step_length) ** 2 + 1e-8
        rotation = (self.rotation_per_metre * step_length + self.rotation_per_step) ** 2
        return np.diag([translation] * 3 + [rotation] * 3)


@dataclass
class FilterRun:
    """Per frame: whether the gate refused the pose, the filter's position error after it and
    whether the truth lay inside the filter's 95% position ellipsoid."""

    refused: NDArray[np.bool_]
    filter_position_error: FloatArray
    inside_95: NDArray[np.bool_]


def read_trajectories(path: Path) -> list[Trajectory]:
    """poses.csv of eval-folder, one Trajectory per `sequence`."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "cov_35" not in rows[0]:
        raise ValueError(f"{path} is not a poses.csv of pose-regressor eval-folder")
    by_sequence: dict[int, list[dict[str, str]]] = {}
    for row in rows:
        by_sequence.setdefault(int(row["sequence"]), []).append(row)
    trajectories = []
    for sequence_rows in by_sequence.values():
        sequence_rows.sort(key=lambda r: int(r["stamp_ns"]))

        def column(*names: str, rows: list[dict[str, str]] = sequence_rows) -> FloatArray:
            return np.array([[float(r[n]) for n in names] for r in rows])

        trajectories.append(
            Trajectory(
                truth_t=column("gt_tx", "gt_ty", "gt_tz"),
                truth_r=Rotation.from_quat(column("gt_qx", "gt_qy", "gt_qz", "gt_qw")),
                pose_t=column("tx", "ty", "tz"),
                pose_r=Rotation.from_quat(column("qx", "qy", "qz", "qw")),
                covariance=column(*(f"cov_{i}" for i in range(36))).reshape(-1, 6, 6),
                uncertain=column("uncertain")[:, 0] > 0.5,
                position_error=column("position_error")[:, 0],
                rotation_error_deg=column("rotation_error_deg")[:, 0],
            )
        )
    return trajectories


def inflated(trajectories: list[Trajectory], factor: float) -> list[Trajectory]:
    return [replace(tr, covariance=tr.covariance * factor) for tr in trajectories]


def skew(v: FloatArray) -> FloatArray:
    return np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])


def run_filter(
    trajectory: Trajectory,
    noise: OdometryNoise,
    threshold: float,
    start: str,
    rng: np.random.Generator,
    refuse_flagged: bool = False,
) -> FilterRun:
    """The gated error-state filter over one trajectory (see the module docstring)."""
    n = len(trajectory.truth_t)
    if start == "truth":
        t, r = trajectory.truth_t[0].copy(), trajectory.truth_r[0]
        p = np.diag([START_STD[0] ** 2] * 3 + [START_STD[1] ** 2] * 3)
    else:
        t, r = trajectory.pose_t[0].copy(), trajectory.pose_r[0]
        p = trajectory.covariance[0].copy()
    refused = np.zeros(n, dtype=bool)
    errors = np.zeros(n)
    inside = np.zeros(n, dtype=bool)
    for k in range(n):
        if k > 0:
            # odometry: the true motion in the previous robot frame, with noise
            step_r = trajectory.truth_r[k - 1].inv() * trajectory.truth_r[k]
            step_t = trajectory.truth_r[k - 1].inv().apply(trajectory.truth_t[k] - trajectory.truth_t[k - 1])
            q = noise.covariance(float(np.linalg.norm(step_t)))
            sample = rng.multivariate_normal(np.zeros(6), q)
            odom_t = step_t + sample[:3]
            odom_r = step_r * Rotation.from_rotvec(sample[3:])
            moved = r.apply(odom_t)
            f = np.eye(6)
            f[:3, 3:] = -skew(moved)
            g = np.zeros((6, 6))
            g[:3, :3] = r.as_matrix()
            r = r * odom_r
            g[3:, 3:] = r.as_matrix()
            t = t + moved
            p = f @ p @ f.T + g @ q @ g.T
        if not (start == "first_pose" and k == 0):
            innovation = np.concatenate(
                [trajectory.pose_t[k] - t, (trajectory.pose_r[k] * r.inv()).as_rotvec()]
            )
            s = p + trajectory.covariance[k]
            squared = float(innovation @ np.linalg.solve(s, innovation))
            refused[k] = squared >= threshold**2 or (refuse_flagged and bool(trajectory.uncertain[k]))
            if not refused[k]:
                gain = p @ np.linalg.inv(s)
                correction = gain @ innovation
                t = t + correction[:3]
                r = Rotation.from_rotvec(correction[3:]) * r
                joseph = np.eye(6) - gain
                p = joseph @ p @ joseph.T + gain @ trajectory.covariance[k] @ gain.T
        offset = trajectory.truth_t[k] - t
        errors[k] = float(np.linalg.norm(offset))
        inside[k] = float(offset @ np.linalg.solve(p[:3, :3], offset)) <= CHI2_95_3DOF
    return FilterRun(refused, errors, inside)


def gross_mask(
    trajectories: list[Trajectory], median_t: float, median_r: float, factor: float
) -> NDArray[np.bool_]:
    t_err = np.concatenate([tr.position_error for tr in trajectories])
    r_err = np.concatenate([tr.rotation_error_deg for tr in trajectories])
    return (t_err > factor * median_t) | (r_err > factor * median_r)


def share(mask: NDArray[np.bool_], within: NDArray[np.bool_]) -> float | None:
    return float(mask[within].mean()) if within.any() else None


def summarize(
    trajectories: list[Trajectory],
    gross: NDArray[np.bool_],
    noise: OdometryNoise,
    threshold: float,
    seed: int,
) -> dict[str, object]:
    pose_error = np.concatenate([tr.position_error for tr in trajectories])
    flagged = np.concatenate([tr.uncertain for tr in trajectories])
    result: dict[str, object] = {
        "frames": len(pose_error),
        "trajectories": len(trajectories),
        "gross_errors": int(gross.sum()),
        "flag_catches": share(flagged, gross),
        "flag_refuses_others": share(flagged, ~gross),
        "localizer_median_m": float(np.median(pose_error)),
        "localizer_p95_m": float(np.percentile(pose_error, 95)),
    }
    for start in STARTS:
        for refuse_flagged in (False, True):
            rng = np.random.default_rng(seed)  # the same odometry noise for every variant
            runs = [run_filter(tr, noise, threshold, start, rng, refuse_flagged) for tr in trajectories]
            refused = np.concatenate([run.refused for run in runs])
            filtered = np.concatenate([run.filter_position_error for run in runs])
            inside = np.concatenate([run.inside_95 for run in runs])
            key = f"{start}{'_and_flag' if refuse_flagged else ''}"
            result[key] = {
                "gate_catches": share(refused, gross),
                "gate_refuses_others": share(refused, ~gross),
                "filter_median_m": float(np.median(filtered)),
                "filter_p95_m": float(np.percentile(filtered, 95)),
                "filter_inside_95": float(inside.mean()),
            }
    return result


def percent(value: object) -> str:
    return "n/a" if value is None else f"{100 * float(value):.0f}%"  # type: ignore[arg-type]


def filter_cell(run: dict[str, object]) -> str:
    return (
        f"{float(run['filter_median_m']):.3f} / {float(run['filter_p95_m']):.3f}, "  # type: ignore[arg-type]
        f"{percent(run['filter_inside_95'])}"
    )


def table(results: dict[str, dict[str, object]]) -> str:
    lines = [
        "| poses | frames (gross) | flag: catches, refuses others | start | gate: catches, refuses others "
        "| gate + flag: catches, refuses others | localizer median / p95 | filter median / p95, inside 95% "
        "(gate) | the same (gate + flag) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        for start in STARTS:
            gate, both = r[start], r[f"{start}_and_flag"]
            assert isinstance(gate, dict) and isinstance(both, dict)
            lines.append(
                f"| {name} | {r['frames']} ({r['gross_errors']}) | {percent(r['flag_catches'])}, "
                f"{percent(r['flag_refuses_others'])} | {start} | {percent(gate['gate_catches'])}, "
                f"{percent(gate['gate_refuses_others'])} | {percent(both['gate_catches'])}, "
                f"{percent(both['gate_refuses_others'])} | {r['localizer_median_m']:.3f} / "
                f"{r['localizer_p95_m']:.3f} | {filter_cell(gate)} | {filter_cell(both)} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--poses", type=Path, nargs="+", required=True, help="eval-folder poses.csv files")
    parser.add_argument("--gross-from", type=Path, help="poses.csv whose median errors define a gross error")
    parser.add_argument("--gross-factor", type=float, default=3.0)
    parser.add_argument("--drift", type=float, default=0.02, help="odometry translation std / step length")
    parser.add_argument(
        "--rotation-drift-deg", type=float, default=1.0, help="odometry rotation std per metre"
    )
    parser.add_argument("--threshold", type=float, default=5.0, help="pose0_rejection_threshold (sigmas)")
    parser.add_argument(
        "--inflation",
        type=float,
        default=1.0,
        help="factor on the pose covariance the filter receives (the node's covariance_inflation)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    try:
        inputs = {str(p): inflated(read_trajectories(p), args.inflation) for p in args.poses}
        reference = read_trajectories(args.gross_from) if args.gross_from else next(iter(inputs.values()))
    except (OSError, ValueError, KeyError) as exc:
        print(f"ekf_gate: {exc}", file=sys.stderr)
        return 2
    median_t = float(np.median(np.concatenate([tr.position_error for tr in reference])))
    median_r = float(np.median(np.concatenate([tr.rotation_error_deg for tr in reference])))
    noise = OdometryNoise(
        args.drift, np.radians(args.rotation_drift_deg), np.radians(STEP_ROTATION_NOISE_DEG)
    )
    results = {
        name: summarize(
            trajectories,
            gross_mask(trajectories, median_t, median_r, args.gross_factor),
            noise,
            args.threshold,
            args.seed,
        )
        for name, trajectories in inputs.items()
    }
    print(
        f"gross error: above {args.gross_factor} x ({median_t:.3f}, {median_r:.2f} deg); odometry drift "
        f"{args.drift:.0%} of the step, {args.rotation_drift_deg} deg/m; gate {args.threshold} sigma; "
        f"pose covariance x {args.inflation:g}"
    )
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
