"""`pose-regressor evaluate`: the node and a bag replay as separate processes over real DDS.

    bag --(pose-regressor replay, its own process)--> camera topics --> localizer (its own process)
        --> ~/pose_with_covariance, /diagnostics --> recorder (this process)

The recorder matches every published pose to the bag's ground truth at the pose's stamp and
measures the end-to-end latency as the pose's receive time minus the publish time of the last
image of its input set (both CLOCK_MONOTONIC on this host; the replay logs its publish times).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseWithCovarianceStamped
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosbags.rosbag2 import Reader

from pose_regressor import pose
from pose_regressor.bagio import TYPESTORE
from pose_regressor.bundle import load_bundle
from pose_regressor.ground_truth import GT_TYPES, GroundTruthTrack, gt_pose_fields, stamp_ns
from pose_regressor.messages import ns_from_time
from pose_regressor.soak import RssSampler, soak_report, soak_series
from pose_regressor.uncertainty import nees, tangent_residual

THRESHOLDS = ((0.05, 5.0), (0.25, 2.0), (0.5, 5.0), (5.0, 10.0))


class EvaluationError(RuntimeError):
    """The end-to-end evaluation could not run (the message says which part failed)."""


@dataclass(frozen=True)
class EvaluateConfig:
    bag: Path
    bundle: Path
    gt_topic: str = "/ground_truth/pose"
    rate: float = 1.0
    out: Path = Path("out/evaluate")
    mc_samples: int = 0  # 0: the bundle's
    backend: str = "auto"
    camera_topics: tuple[str, ...] = ()  # default: the bundle's
    node_name: str = "localizer"
    startup_timeout_s: float = 60.0
    settle_s: float = 2.0
    extra_node_args: tuple[str, ...] = ()
    duration_s: float | None = None
    loop: bool = False


@dataclass
class Recording:
    poses: list[tuple[int, int, np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)
    diagnostics: list[dict[str, str]] = field(default_factory=list)
    levels: list[int] = field(default_factory=list)


def read_ground_truth(bag: Path, topic: str) -> GroundTruthTrack:
    with Reader(bag) as reader:
        connections = [c for c in reader.connections if c.topic == topic]
        if not connections:
            topics = ", ".join(sorted({c.topic for c in reader.connections}))
            raise EvaluationError(f"ground-truth topic {topic} is not in {bag}; it has {topics}")
        if connections[0].msgtype not in GT_TYPES:
            raise EvaluationError(
                f"{topic} has type {connections[0].msgtype}; expected one of {', '.join(GT_TYPES)}"
            )
        stamps, positions, orientations = [], [], []
        for conn, _, raw in reader.messages(connections=connections):
            msg: Any = TYPESTORE.deserialize_cdr(raw, conn.msgtype)
            p, o = gt_pose_fields(msg, conn.msgtype)
            stamps.append(stamp_ns(msg.header))
            positions.append([p.x, p.y, p.z])
            orientations.append([o.x, o.y, o.z, o.w])
    if not stamps:
        raise EvaluationError(f"ground-truth topic {topic} in {bag} has no messages")
    return GroundTruthTrack(stamps, np.array(positions, dtype=float), np.array(orientations, dtype=float))


def count_messages(bag: Path, topic: str) -> int:
    with Reader(bag) as reader:
        counts = [c.msgcount for c in reader.connections if c.topic == topic]
    if not counts:
        raise EvaluationError(f"camera topic {topic} is not in {bag}")
    return sum(counts)


def _pose_arrays(msg: PoseWithCovarianceStamped) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    p, o = msg.pose.pose.position, msg.pose.pose.orientation
    return (
        np.array([p.x, p.y, p.z]),
        np.array([o.x, o.y, o.z, o.w]),
        np.array(msg.pose.covariance).reshape(6, 6),
    )


class _Recorder:
    def __init__(self, output_ns: str) -> None:
        self.node = rclpy.create_node("pose_regressor_evaluate")
        self.recording = Recording()
        self._lock = threading.Lock()
        qos = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(
            PoseWithCovarianceStamped, f"{output_ns}/pose_with_covariance", self._on_pose, qos
        )
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, qos)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def _on_pose(self, msg: PoseWithCovarianceStamped) -> None:
        received = time.monotonic_ns()
        t, q, cov = _pose_arrays(msg)
        with self._lock:
            self.recording.poses.append((ns_from_time(msg.header.stamp), received, t, q, cov))

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith("pose_regressor"):
                with self._lock:
                    self.recording.diagnostics.append({kv.key: kv.value for kv in status.values})
                    self.recording.levels.append(int.from_bytes(status.level, "little"))

    def pose_count(self) -> int:
        with self._lock:
            return len(self.recording.poses)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()


def _wait_for_node(
    recorder: _Recorder, node: subprocess.Popen[str], log_path: Path, topics: tuple[str, ...], timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if node.poll() is not None:
            err = log_path.read_text(errors="replace")
            raise EvaluationError(f"the localizer exited with code {node.returncode}: {err.strip()[-2000:]}")
        if all(recorder.node.count_subscribers(topic) > 0 for topic in topics):
            return
        time.sleep(0.1)
    raise EvaluationError(f"the localizer did not subscribe to {', '.join(topics)} within {timeout:g} s")


@dataclass
class ReplayLog:
    """What the replay logged for the camera topics, per (possibly loop-shifted) stamp."""

    published_ns: dict[int, int] = field(default_factory=dict)  # last image of the set, monotonic
    offset_ns: dict[int, int] = field(default_factory=dict)  # loop shift added to the bag's stamp


def read_replay_log(log_path: Path, topics: tuple[str, ...]) -> ReplayLog:
    log = ReplayLog()
    wanted = set(topics)
    for line in log_path.read_text().splitlines():
        record = json.loads(line)
        if record["topic"] in wanted:
            stamp = record["stamp_ns"]
            log.published_ns[stamp] = max(log.published_ns.get(stamp, 0), record["published_ns"])
            log.offset_ns[stamp] = record.get("offset_ns", 0)
    return log


def pose_latencies(recording: Recording, log: ReplayLog) -> list[tuple[float, float]]:
    """(receive time in monotonic s, end-to-end latency in ms) of every pose whose set was logged."""
    return [
        (received / 1e9, (received - log.published_ns[stamp]) / 1e6)
        for stamp, received, *_ in recording.poses
        if stamp in log.published_ns
    ]


def summarize(
    recording: Recording, track: GroundTruthTrack, log: ReplayLog, expected_sets: int
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Metrics of a recording against the ground truth (and arrays for the plots).

    Poses of looped replays are matched to the ground truth at their stamp minus the loop shift.
    """
    rows = []
    for stamp, received, t, q, cov in sorted(recording.poses, key=lambda r: r[0]):
        truth = track.interpolate(stamp - log.offset_ns.get(stamp, 0), max_gap_ns=10**18)
        if isinstance(truth, tuple):
            rows.append((stamp, received, t, q, cov, truth[0], truth[1]))
    if not rows:
        raise EvaluationError("no published pose could be matched to the ground truth")
    stamps = np.array([r[0] for r in rows])
    t_pred, q_pred = np.stack([r[2] for r in rows]), np.stack([r[3] for r in rows])
    covs = np.stack([r[4] for r in rows])
    t_gt, q_gt = np.stack([r[5] for r in rows]), np.stack([r[6] for r in rows])
    t_err = pose.translation_error(t_gt, t_pred)
    r_err = pose.rotation_error_deg(q_gt, q_pred)
    latency_ms = np.array([ms for _, ms in pose_latencies(recording, log)], dtype=float)
    nees_values = np.array(
        [
            nees(tangent_residual(tg, qg, tp, qp), c)
            for tg, qg, tp, qp, c in zip(t_gt, q_gt, t_pred, q_pred, covs, strict=True)
        ]
    )
    pos_std = np.sqrt(np.trace(covs[:, :3, :3], axis1=1, axis2=2) / 3)
    rot_std = np.degrees(np.sqrt(np.trace(covs[:, 3:, 3:], axis1=1, axis2=2) / 3))
    last_diag = recording.diagnostics[-1] if recording.diagnostics else {}
    covs_spd = bool(all(np.allclose(c, c.T) and np.linalg.eigvalsh(c).min() > 0 for c in covs))
    metrics: dict[str, Any] = {
        "frames": len(rows),
        "published": len(recording.poses),
        "expected_sets": int(expected_sets),
        "output_rate_ratio": float(len(recording.poses) / max(expected_sets, 1)),
        "median_translation_m": float(np.median(t_err)),
        "median_rotation_deg": float(np.median(r_err)),
        "mean_translation_m": float(np.mean(t_err)),
        "mean_rotation_deg": float(np.mean(r_err)),
        "latency_ms_p50": float(np.percentile(latency_ms, 50)) if len(latency_ms) else float("nan"),
        "latency_ms_p99": float(np.percentile(latency_ms, 99)) if len(latency_ms) else float("nan"),
        "dropped_sets": int(last_diag.get("dropped_sets", 0)),
        "engine_ms_p50": float(last_diag.get("engine_ms_p50", "nan")),
        "mean_nees": float(np.mean(nees_values)),
        "median_position_std_m": float(np.median(pos_std)),
        "median_rotation_std_deg": float(np.median(rot_std)),
        "covariances_spd": covs_spd,
        "stamps_match_inputs": bool(set(stamps.tolist()) <= set(log.published_ns))
        if log.published_ns
        else False,
        "diagnostics_levels_seen": sorted(set(recording.levels)),
        "node_diagnostics_last": last_diag,
    }
    for metres, degrees in THRESHOLDS:
        metrics[f"pct_within_{metres:g}m_{degrees:g}deg"] = float(
            100 * np.mean((t_err <= metres) & (r_err <= degrees))
        )
    arrays = {
        "stamps": stamps,
        "t_pred": t_pred,
        "t_gt": t_gt,
        "covs": covs,
        "t_err": t_err,
        "r_err": r_err,
        "pos_std": pos_std,
        "rot_std": rot_std,
    }
    return metrics, arrays


def _write_poses(path: Path, recording: Recording) -> None:
    lines = ["stamp_ns,received_monotonic_ns,tx,ty,tz,qx,qy,qz,qw,var_x,var_y,var_z,var_rx,var_ry,var_rz"]
    for stamp, received, t, q, cov in sorted(recording.poses, key=lambda r: r[0]):
        values = [*t, *q, *np.diag(cov)]
        lines.append(f"{stamp},{received}," + ",".join(f"{v:.9g}" for v in values))
    path.write_text("\n".join(lines) + "\n")


def run_evaluation(cfg: EvaluateConfig) -> dict[str, Any]:
    """Runs node + replay, records, and writes metrics.json and plots into `cfg.out`."""
    bundle = load_bundle(cfg.bundle)
    topics = cfg.camera_topics or tuple(camera.topic for camera in bundle.cameras)
    track = read_ground_truth(cfg.bag, cfg.gt_topic)
    expected = count_messages(cfg.bag, topics[0])
    cfg.out.mkdir(parents=True, exist_ok=True)
    log_path = cfg.out / "replay_log.jsonl"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    node_cmd = [
        sys.executable,
        "-m",
        "pose_regressor.cli",
        "run",
        "--bundle",
        str(cfg.bundle),
        "--camera-topics",
        *topics,
        "--ros-args",
        "-p",
        f"mc_samples:={cfg.mc_samples}",
        "-p",
        f"backend:={cfg.backend}",
        # NEES below compares residuals about the map axes: the message definition's convention.
        "-p",
        "covariance_rotation:=fixed_axes",
        *cfg.extra_node_args,
    ]
    rclpy.init()
    recorder = _Recorder(f"/{cfg.node_name}")
    # The node's output goes to a file, not a pipe: a long run must never fill a pipe nobody reads.
    node_log_path = cfg.out / "node.log"
    node_log = node_log_path.open("w")
    node = subprocess.Popen(node_cmd, env=env, stdout=node_log, stderr=subprocess.STDOUT, text=True)
    rss = RssSampler(node.pid)
    replay_span = (0.0, 0.0)
    node_alive = True  # checked right after the replay: a crash during it is an error
    try:
        _wait_for_node(recorder, node, node_log_path, topics, cfg.startup_timeout_s)
        rss.start()
        replay_cmd = [
            sys.executable,
            "-m",
            "pose_regressor.cli",
            "replay",
            str(cfg.bag),
            "--rate",
            str(cfg.rate),
            "--topics",
            *topics,
            "--log",
            str(log_path),
            "--start-delay",
            "5",
        ]
        if cfg.duration_s is not None:
            replay_cmd += ["--duration", str(cfg.duration_s)]
        if cfg.loop:
            replay_cmd += ["--loop"]
        replay_started = time.monotonic()
        replay = subprocess.run(replay_cmd, env=env, capture_output=True, text=True, check=False)
        replay_span = (replay_started, time.monotonic())
        if replay.returncode != 0:
            raise EvaluationError(f"replay failed: {replay.stderr.strip()[-2000:]}")
        node_alive = node.poll() is None
        # Let the last sets through, then wait for one more diagnostics message.
        last, quiet_since = recorder.pose_count(), time.monotonic()
        while time.monotonic() - quiet_since < cfg.settle_s:
            time.sleep(0.1)
            if recorder.pose_count() != last:
                last, quiet_since = recorder.pose_count(), time.monotonic()
        diag_count = len(recorder.recording.diagnostics)
        deadline = time.monotonic() + 3.0
        while len(recorder.recording.diagnostics) == diag_count and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        rss.stop()
        if node.poll() is None:
            node.send_signal(signal.SIGINT)
            try:
                node.wait(timeout=10)
            except subprocess.TimeoutExpired:
                node.kill()
        node_log.close()
        recorder.close()
        rclpy.shutdown()
    if not node_alive:
        raise EvaluationError(
            f"the localizer died during the replay (exit code {node.returncode}); its log: {node_log_path}"
        )
    log = read_replay_log(log_path, topics)
    # Expected sets: the stamps the replay actually published.
    metrics, arrays = summarize(recorder.recording, track, log, len(log.published_ns) or expected)
    metrics.update(
        {"bag": str(cfg.bag), "bundle": str(cfg.bundle), "rate": cfg.rate, "mc_samples": cfg.mc_samples}
    )
    if cfg.duration_s is not None:
        latencies = pose_latencies(recorder.recording, log)
        # The run starts with the first published image, not with the replay's discovery wait.
        start = min(log.published_ns.values()) / 1e9 if log.published_ns else replay_span[0]
        metrics["soak"] = soak_report(
            rss.samples, latencies, start, replay_span[1], metrics["dropped_sets"], True
        )
        series = soak_series(rss.samples, latencies, start, bin_s=max(1.0, (replay_span[1] - start) / 60))
        arrays.update({f"soak_{k}": v for k, v in series.items()})
    (cfg.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    _write_poses(cfg.out / "poses.csv", recorder.recording)
    try:
        from pose_regressor.evaluate_plots import plot_evaluation

        plot_evaluation(arrays, metrics, cfg.out)
    except ImportError as exc:  # matplotlib is a development dependency, not a robot one
        print(f"evaluate: no plots ({exc})")
    return metrics
