"""`pose-regressor eval-node`: the node and a bag replay as separate processes over real DDS.

    bag --(pose-regressor replay, its own process)--> camera topics --> localizer (its own process)
        --> ~/pose_with_covariance, /diagnostics --> recorder (this process)

The recorder matches every published pose to the bag's ground truth at the pose's stamp.

Two latencies, named for what they measure:

* `e2e_latency_ms_p50/p99` (the headline): the pose's receive time here minus the publish time
  of the last image of its input set in the replay (both CLOCK_MONOTONIC on this host; the
  replay logs its publish times). It includes DDS transport of the images, the node's decoding,
  synchronization, waiting in the one-slot mailbox, inference, and the pose's way back.
* `node_set_to_pose_ms_p50/p99`: the node's own figure from `/diagnostics`
  (`set_to_pose_ms_p50/p99`): from the moment the node completed the synchronized set (its
  last image decoded and resized) to the estimate being ready. It leaves out DDS, decoding and
  the subscription queues, so it is smaller, by a lot under load.

`latency_ms_p50/p99` remain in metrics.json as aliases of the end-to-end figures (deprecated).

Delivery: every camera set the replay published completely is either a received pose or
accounted for by the node (`dropped_sets`: replaced by a newer set, keep-latest; rejected
images; inference failures; poses withheld as uncertain under `gate_uncertain`). When less than
`MIN_DELIVERY_RATIO` of them is accounted for, images were lost on the way (typically a Fast DDS
profile too small for the images) and the evaluation fails with the ratio rather than reporting
accuracy on the few sets that arrived.
The children (node and replay) get FASTRTPS_DEFAULT_PROFILES_FILE set to the package's
`config/fastdds_large_images.xml` unless the user set one.

Signals: `evaluate_node(cfg, stop)` polls `stop` (set by the command line's SIGINT/SIGTERM
handlers) in every wait, stops both children and raises `Interrupted`; no results are written
then. metrics.json and poses.csv are written whole (temporary file, then rename), and results of
an earlier run in `out` are removed first, so `out/metrics.json` is always this run's.
"""

from __future__ import annotations

import json
import math
import os
import re
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
from rclpy.signals import SignalHandlerOptions
from rosbags.rosbag2 import Reader

from pose_regressor import pose
from pose_regressor.bagio import (
    TYPESTORE,
    BagReadError,
    ReadStats,
    nothing_readable,
    one_line,
    open_bag,
    read_messages,
)
from pose_regressor.bundle import load_bundle
from pose_regressor.error_correlation import error_correlation
from pose_regressor.files import atomic_write_text, json_text
from pose_regressor.ground_truth import GT_TYPES, GroundTruthTrack, gt_pose_fields, stamp_ns
from pose_regressor.limits import MAX_MC_SAMPLES, MIN_DELIVERY_RATIO
from pose_regressor.messages import ns_from_time
from pose_regressor.metrics import covariance_stds, error_summary, nees_values, pose_errors, tangent_residuals
from pose_regressor.params import bundle_flag_thresholds
from pose_regressor.replay import (
    PROFILE_ENV,
    StopFlag,
    check_duration,
    check_rate,
    check_skip_empty,
    dds_environment,
)
from pose_regressor.soak import RssSampler, soak_report, soak_series
from pose_regressor.teardown import teardown_watchdog
from pose_regressor.uncertainty_metrics import published_uncertainty

REPLAY_START_DELAY_S = 5.0  # the replay's wait for the node's subscriptions
REPLAY_WATCHDOG_MARGIN_S = 60.0  # a replay with --duration D is stopped after D + delay + this
POLL_S = 0.1
# What a run writes besides its logs; removed first so that a failed run leaves none of an earlier one.
RESULT_FILES = (
    "metrics.json",
    "poses.csv",
    "trajectory.png",
    "errors_over_time.png",
    "reliability.png",
    "soak.png",
)


class EvaluationError(RuntimeError):
    """The end-to-end evaluation could not run (the message says which part failed)."""


@dataclass(frozen=True)
class NodeEvaluationConfig:
    bag: Path
    bundle: Path
    gt_topic: str = "/ground_truth/pose"
    rate: float = 1.0
    out: Path = Path("out/eval-node")
    mc_samples: int = 0  # 0: the bundle's
    backend: str = "auto"
    camera_topics: tuple[str, ...] = ()  # default: the bundle's
    node_name: str = "localizer"
    startup_timeout_s: float = 60.0
    settle_s: float = 2.0
    extra_node_args: tuple[str, ...] = ()
    duration_s: float | None = None
    loop: bool = False
    skip_empty_s: float | None = None  # replay: empty stretches longer than this are cut short


@dataclass
class Recording:
    poses: list[tuple[int, int, np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)
    diagnostics: list[dict[str, str]] = field(default_factory=list)
    levels: list[int] = field(default_factory=list)


@dataclass
class GroundTruth:
    track: GroundTruthTrack
    corrupt: int = 0  # records that did not deserialize or hold a non-finite / zero quaternion pose
    unreadable: int = 0  # records the bag's index promised that could not be read (damaged chunk)
    read_error: str | None = None


def read_ground_truth(reader: Reader, bag: Path, topic: str, stop: StopFlag | None = None) -> GroundTruth:
    """The ground-truth track of `topic`; corrupt records are skipped and counted.

    Raises:
        EvaluationError: the topic is missing, has another type, or has no messages.
        BagReadError: it has messages but none of them can be read.
    """
    connections = [c for c in reader.connections if c.topic == topic]
    if not connections:
        topics = ", ".join(sorted({c.topic for c in reader.connections}))
        raise EvaluationError(f"ground-truth topic {topic} is not in {bag}; it has {topics}")
    if connections[0].msgtype not in GT_TYPES:
        raise EvaluationError(
            f"{topic} has type {connections[0].msgtype}; expected one of {', '.join(GT_TYPES)}"
        )
    stamps: list[int] = []
    positions: list[list[float]] = []
    orientations: list[list[float]] = []
    corrupt = 0
    read = ReadStats()
    for conn, _, raw in read_messages(reader, connections, read):
        if stop is not None:
            stop.check()
        try:
            msg: Any = TYPESTORE.deserialize_cdr(raw, conn.msgtype)
            p, o = gt_pose_fields(msg, conn.msgtype)
            position = [float(p.x), float(p.y), float(p.z)]
            orientation = [float(o.x), float(o.y), float(o.z), float(o.w)]
            stamp = stamp_ns(msg.header)
            if not np.all(np.isfinite(position)):
                raise ValueError("non-finite position")
            pose.normalize_quaternion(orientation)  # raises on a non-finite or zero quaternion
        except Exception:  # a corrupt record can fail anywhere in the CDR decoder
            corrupt += 1
            continue
        stamps.append(stamp)
        positions.append(position)
        orientations.append(orientation)
    if not stamps:
        if corrupt or read.damaged:
            raise BagReadError(nothing_readable(bag, topic, corrupt, read))
        raise EvaluationError(f"ground-truth topic {topic} in {bag} has no messages")
    track = GroundTruthTrack(stamps, np.array(positions, dtype=float), np.array(orientations, dtype=float))
    return GroundTruth(track, corrupt, read.unreadable, read.error)


def count_messages(reader: Reader, bag: Path, topics: tuple[str, ...]) -> int:
    """Messages of `topics[0]` by the bag's index, after checking that every topic is in the bag."""
    available = {c.topic for c in reader.connections}
    missing = [t for t in topics if t not in available]
    if missing:
        raise EvaluationError(
            f"camera topic(s) {', '.join(missing)} are not in {bag}; it has {', '.join(sorted(available))}"
        )
    return sum(c.msgcount for c in reader.connections if c.topic == topics[0])


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
        # Join the spin thread before the node and the context go: a thread still inside rclpy's
        # wait when the interpreter exits aborts the process ("terminate called without an
        # active exception"), which a start-up failure a second after the start made likely.
        self._thread.join(timeout=10)
        self.node.destroy_node()


def last_error_line(text: str) -> str:
    """The line of a log that says what went wrong: the last ERROR or error line, else the last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if "[ERROR]" in line or "error:" in line.lower() or "Error" in line:
            return one_line(line, 1000)
    return one_line(lines[-1], 1000) if lines else "(no output)"


def _wait_for_node(
    recorder: _Recorder,
    node: subprocess.Popen[str],
    log_path: Path,
    topics: tuple[str, ...],
    timeout: float,
    stop: StopFlag,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stop.check()
        _raise_if_exited(node, log_path, "exited with code {code} before subscribing")
        if all(recorder.node.count_subscribers(topic) > 0 for topic in topics):
            return
        stop.sleep(POLL_S)
    raise EvaluationError(
        f"the localizer did not subscribe to {', '.join(topics)} within {timeout:g} s (log: {log_path})"
    )


@dataclass
class ReplayLog:
    """What the replay logged for the camera topics, per (possibly loop-shifted) stamp."""

    published_ns: dict[int, int] = field(default_factory=dict)  # last image of the set, monotonic
    offset_ns: dict[int, int] = field(default_factory=dict)  # loop shift added to the bag's stamp
    topics: dict[int, set[str]] = field(default_factory=dict)  # camera topics published per stamp
    summary: dict[str, Any] = field(default_factory=dict)  # the replay's counts (its last line)

    def complete_sets(self, topic_count: int) -> int:
        """Stamps for which every camera topic was published: the sets the node could form."""
        return sum(1 for seen in self.topics.values() if len(seen) >= topic_count)


def read_replay_log(log_path: Path, topics: tuple[str, ...]) -> ReplayLog:
    log = ReplayLog()
    wanted = set(topics)
    if not log_path.exists():
        return log
    for line in log_path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut by a killed replay
            continue
        if "summary" in record:
            log.summary = dict(record["summary"])
        elif record.get("topic") in wanted:
            stamp = record["stamp_ns"]
            log.published_ns[stamp] = max(log.published_ns.get(stamp, 0), record["published_ns"])
            log.offset_ns[stamp] = record.get("offset_ns", 0)
            log.topics.setdefault(stamp, set()).add(record["topic"])
    return log


def _diag_int(values: dict[str, str], key: str) -> int:
    try:
        return int(values.get(key, "0"))
    except ValueError:
        return 0


def _diag_float(values: dict[str, str], key: str) -> float:
    try:
        return float(values.get(key, "nan"))
    except ValueError:
        return float("nan")


def delivery_report(recording: Recording, log: ReplayLog, topic_count: int) -> dict[str, Any]:
    """How many of the sets the replay published completely reached the node or were accounted for
    by it (replaced by a newer set, a rejected image, a failed inference, a pose withheld as
    uncertain by `gate_uncertain`)."""
    last = recording.diagnostics[-1] if recording.diagnostics else {}
    complete = log.complete_sets(topic_count)
    poses = len(recording.poses)
    dropped = _diag_int(last, "dropped_sets")
    rejected = _diag_int(last, "rejected_images")
    failed = _diag_int(last, "engine_errors") + _diag_int(last, "nonfinite_outputs")
    withheld = _diag_int(last, "withheld_poses")
    accounted = min(complete, poses + dropped + rejected + failed + withheld)
    return {
        "sets_published_complete": complete,
        "sets_accounted": accounted,
        "delivery_ratio": accounted / complete if complete else 1.0,
        "min_delivery_ratio": MIN_DELIVERY_RATIO,
        "poses_received": poses,
        "rejected_images": rejected,
        "failed_sets": failed,
        "withheld_poses": withheld,
    }


def pose_latencies(recording: Recording, log: ReplayLog) -> list[tuple[float, float]]:
    """(receive time in monotonic s, end-to-end latency in ms) of every pose whose set was logged."""
    return [
        (received / 1e9, (received - log.published_ns[stamp]) / 1e6)
        for stamp, received, *_ in recording.poses
        if stamp in log.published_ns
    ]


def flag_thresholds_in_force(
    diagnostics: dict[str, str], bundle_thresholds: tuple[float, float]
) -> tuple[tuple[float, float], str]:
    """The node's uncertain-flag thresholds (max position std m, max rotation std rad) as its
    diagnostics report them (a `-p max_position_std:=...` of the run included), and where they
    came from; the bundle's (`bundle_thresholds`) when the node sent no diagnostics."""
    position = _diag_float(diagnostics, "max_position_std_m")
    rotation = math.radians(_diag_float(diagnostics, "max_rotation_std_deg"))
    if position > 0 and rotation > 0:  # nan (missing) fails both
        return (position, rotation), "the node's diagnostics"
    return bundle_thresholds, "the bundle's (no diagnostics from the node)"


def summarize(
    recording: Recording,
    track: GroundTruthTrack,
    log: ReplayLog,
    expected_sets: int,
    bundle_thresholds: tuple[float, float],
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Metrics of a recording against the ground truth (and arrays for the plots). The uncertain
    flag is scored at the thresholds in force in the node (`flag_thresholds_in_force`).

    Poses of looped replays are matched to the ground truth at their stamp minus the loop shift.
    """
    rows = []
    for stamp, received, t, q, cov in sorted(recording.poses, key=lambda r: r[0]):
        truth = track.interpolate(stamp - log.offset_ns.get(stamp, 0), max_gap_ns=10**18)
        if isinstance(truth, tuple):
            rows.append((stamp, received, t, q, cov, truth[0], truth[1], stamp - log.offset_ns.get(stamp, 0)))
    if not rows:
        raise EvaluationError("no published pose could be matched to the ground truth")
    stamps = np.array([r[0] for r in rows])
    t_pred, q_pred = np.stack([r[2] for r in rows]), np.stack([r[3] for r in rows])
    covs = np.stack([r[4] for r in rows])
    t_gt, q_gt = np.stack([r[5] for r in rows]), np.stack([r[6] for r in rows])
    t_err, r_err = pose_errors(t_gt, q_gt, t_pred, q_pred)
    latency_ms = np.array([ms for _, ms in pose_latencies(recording, log)], dtype=float)
    e2e_p50 = float(np.percentile(latency_ms, 50)) if len(latency_ms) else float("nan")
    e2e_p99 = float(np.percentile(latency_ms, 99)) if len(latency_ms) else float("nan")
    residuals = tangent_residuals(t_gt, q_gt, t_pred, q_pred)
    nees = nees_values(residuals, covs)
    pos_std, rot_std = covariance_stds(covs)
    last_diag = recording.diagnostics[-1] if recording.diagnostics else {}
    thresholds, thresholds_from = flag_thresholds_in_force(last_diag, bundle_thresholds)
    uncertainty = published_uncertainty(t_err, r_err, residuals, covs, *thresholds)
    uncertainty["uncertain_flag"]["thresholds_from"] = thresholds_from
    # The node's own count: the scored flag recomputed from the published covariances equals it
    # less the poses withheld (gate_uncertain), unless the node flagged others for a black
    # stand-in camera.
    uncertainty["uncertain_flag"]["node_uncertain_poses"] = _diag_int(last_diag, "uncertain_poses")
    covs_spd = bool(all(np.allclose(c, c.T) and np.linalg.eigvalsh(c).min() > 0 for c in covs))
    metrics: dict[str, Any] = {
        **error_summary(t_err, r_err),
        "published": len(recording.poses),
        "expected_sets": int(expected_sets),
        "output_rate_ratio": float(len(recording.poses) / max(expected_sets, 1)),
        # Receive here minus the replay's publish of the set's last image (see the module docstring).
        "e2e_latency_ms_p50": e2e_p50,
        "e2e_latency_ms_p99": e2e_p99,
        # The node's own figure: set completed in the node -> estimate ready (no DDS, no decoding).
        "node_set_to_pose_ms_p50": _diag_float(last_diag, "set_to_pose_ms_p50"),
        "node_set_to_pose_ms_p99": _diag_float(last_diag, "set_to_pose_ms_p99"),
        "latency_ms_p50": e2e_p50,  # deprecated alias of e2e_latency_ms_p50
        "latency_ms_p99": e2e_p99,  # deprecated alias of e2e_latency_ms_p99
        "dropped_sets": _diag_int(last_diag, "dropped_sets"),
        "engine_ms_p50": _diag_float(last_diag, "engine_ms_p50"),
        "mean_nees": float(np.mean(nees)),
        "median_position_std_m": float(np.median(pos_std)),
        "median_rotation_std_deg": float(np.median(rot_std)),
        "covariances_spd": covs_spd,
        **uncertainty,
        # one recording, cut where it has gaps (metrics.trajectory_pieces)
        "error_correlation": error_correlation(residuals, covs, np.zeros(len(stamps), np.int64), stamps),
        "stamps_match_inputs": bool(set(stamps.tolist()) <= set(log.published_ns))
        if log.published_ns
        else False,
        "diagnostics_levels_seen": sorted(set(recording.levels)),
        "node_diagnostics_last": last_diag,
    }
    arrays = {
        "stamps": stamps,
        "gt_stamps": np.array([r[7] for r in rows]),  # where on the ground truth (loops go back)
        "t_pred": t_pred,
        "t_gt": t_gt,
        "covs": covs,
        "t_err": t_err,
        "r_err": r_err,
        "pos_std": pos_std,
        "rot_std": rot_std,
    }
    return metrics, arrays


def _poses_csv(recording: Recording) -> str:
    lines = ["stamp_ns,received_monotonic_ns,tx,ty,tz,qx,qy,qz,qw,var_x,var_y,var_z,var_rx,var_ry,var_rz"]
    for stamp, received, t, q, cov in sorted(recording.poses, key=lambda r: r[0]):
        values = [*t, *q, *np.diag(cov)]
        lines.append(f"{stamp},{received}," + ",".join(f"{v:.9g}" for v in values))
    return "\n".join(lines) + "\n"


def _prepare_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    for name in (*RESULT_FILES, "replay_log.jsonl"):
        (out / name).unlink(missing_ok=True)


def _check_config(cfg: NodeEvaluationConfig) -> None:
    check_rate(cfg.rate)
    check_duration(cfg.duration_s)
    check_skip_empty(cfg.skip_empty_s)
    if not 0 <= cfg.mc_samples <= MAX_MC_SAMPLES:
        raise ValueError(f"mc_samples must be from 0 to {MAX_MC_SAMPLES}, got {cfg.mc_samples}")
    # `-p covariance_rotation:=...`, also as `-p <node>:covariance_rotation:=...`
    if any(re.search(r"(^|:)covariance_rotation:=", arg) for arg in cfg.extra_node_args):
        raise ValueError(
            "eval-node runs the node with covariance_rotation:=fixed_axes, the convention its NEES is "
            "computed in; leave covariance_rotation out of the node's arguments"
        )
    if any(re.search(r"(^|:)covariance_inflation:=", arg) for arg in cfg.extra_node_args):
        raise ValueError(
            "eval-node scores each pose's own covariance and runs the node with covariance_inflation:=1 "
            "(an EKF's inflation would divide every NEES by it; error_correlation suggests it); leave "
            "covariance_inflation out of the node's arguments"
        )


def _stop_process(process: subprocess.Popen[str], sig: int, timeout: float) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _run_replay(
    cmd: list[str],
    env: dict[str, str],
    node: subprocess.Popen[str],
    node_log_path: Path,
    watchdog_s: float | None,
    stop: StopFlag,
) -> None:
    """Runs the replay process to its end, watching the node, the watchdog and `stop`."""
    replay = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = None if watchdog_s is None else time.monotonic() + watchdog_s
    try:
        while True:
            try:
                _, err = replay.communicate(timeout=POLL_S)
                break
            except subprocess.TimeoutExpired:
                pass
            stop.check()
            _raise_if_exited(node, node_log_path, "died during the replay (exit code {code})")
            if deadline is not None and time.monotonic() > deadline:
                raise EvaluationError(f"the replay did not stop within {watchdog_s:g} s; it was stopped")
    finally:
        if replay.poll() is None:
            replay.send_signal(signal.SIGTERM)  # the replay stops cleanly on SIGTERM
            try:
                replay.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                replay.kill()
                replay.communicate()
    stop.check()  # Ctrl-C in a terminal reaches the whole group: the replay's 130 is no failure then
    if replay.returncode != 0:
        raise EvaluationError(f"replay failed (exit code {replay.returncode}): {last_error_line(err)}")


def evaluate_node(cfg: NodeEvaluationConfig, stop: StopFlag | None = None) -> dict[str, Any]:
    """Runs node + replay, records, and writes metrics.json and plots into `cfg.out`.

    Raises:
        ValueError: a bad setting, an unreadable bag (`BagReadError`) or bundle.
        EvaluationError: the evaluation failed (topics, the node, the replay, lost images).
        Interrupted: `stop` was set (SIGINT/SIGTERM); both children were stopped.
    """
    stop = stop or StopFlag()
    _check_config(cfg)
    bundle = load_bundle(cfg.bundle)
    topics = cfg.camera_topics or tuple(camera.topic for camera in bundle.cameras)
    reader = open_bag(cfg.bag)
    try:
        expected = count_messages(reader, cfg.bag, topics)
        truth = read_ground_truth(reader, cfg.bag, cfg.gt_topic, stop)
    finally:
        reader.close()
    _prepare_out(cfg.out)
    env = dds_environment(dict(os.environ, PYTHONUNBUFFERED="1"))
    run = _run_node_and_replay(cfg, topics, env, stop)
    stop.check()
    log = read_replay_log(run.replay_log, topics)
    delivery = delivery_report(run.recording, log, len(topics))
    profile = env.get(PROFILE_ENV)
    _check_delivery(delivery, run, profile)
    if not run.recording.poses and delivery["withheld_poses"]:
        raise EvaluationError(
            f"the node published no pose: it withheld all {delivery['withheld_poses']} as uncertain "
            "(gate_uncertain); evaluate without gate_uncertain, or with larger max_position_std / "
            "max_rotation_std"
        )
    # Expected sets: the stamps the replay actually published.
    metrics, arrays = summarize(
        run.recording,
        truth.track,
        log,
        len(log.published_ns) or expected,
        bundle_flag_thresholds(bundle.uncertain_flag),
    )
    metrics.update(delivery)
    metrics.update(_run_record(cfg, profile, truth, log.summary))
    # the samples the node used (0 asks for the bundle's; a -p mc_samples:= passed on wins)
    metrics["mc_samples"] = _diag_int(metrics["node_diagnostics_last"], "mc_samples") or cfg.mc_samples
    metrics["length_unit"] = bundle.length_unit  # "units": a model of an import without --scale
    if cfg.duration_s is not None:
        metrics["soak"], series = _soak(run, log, metrics["dropped_sets"])
        arrays.update({f"soak_{k}": v for k, v in series.items()})
    _write_results(cfg, run.recording, metrics, arrays, stop)
    return metrics


@dataclass
class _Run:
    """What a node + replay run left behind, for scoring."""

    recording: Recording
    replay_log: Path
    node_log: Path
    rss_samples: list[tuple[float, int]]
    replay_span: tuple[float, float]  # monotonic start and end of the replay


def _node_command(cfg: NodeEvaluationConfig, topics: tuple[str, ...]) -> list[str]:
    return [
        *(sys.executable, "-m", "pose_regressor.cli", "run", "--bundle", str(cfg.bundle)),
        *("--camera-topics", *topics),
        "--ros-args",
        *("-p", f"mc_samples:={cfg.mc_samples}", "-p", f"backend:={cfg.backend}"),
        *cfg.extra_node_args,
        # NEES compares residuals about the map axes: the message definition's convention, and each
        # pose's own covariance, not an EKF's inflated one (a deployment params file may set it).
        # Last, because the last assignment wins, so that a --params-file above cannot change them.
        *("-p", "covariance_rotation:=fixed_axes", "-p", "covariance_inflation:=1.0"),
    ]


def _replay_command(cfg: NodeEvaluationConfig, topics: tuple[str, ...], log_path: Path) -> list[str]:
    command = [
        *(sys.executable, "-m", "pose_regressor.cli", "replay", str(cfg.bag), "--rate", repr(cfg.rate)),
        *("--topics", *topics, "--log", str(log_path), "--start-delay", f"{REPLAY_START_DELAY_S:g}"),
    ]
    if cfg.duration_s is not None:
        command += ["--duration", repr(cfg.duration_s)]
    if cfg.loop:
        command += ["--loop"]
    if cfg.skip_empty_s is not None:
        command += ["--skip-empty", repr(cfg.skip_empty_s)]
    return command


def _run_node_and_replay(
    cfg: NodeEvaluationConfig, topics: tuple[str, ...], env: dict[str, str], stop: StopFlag
) -> _Run:
    """Starts the node, waits for it, replays the bag, lets the last poses arrive, stops the node."""
    replay_log = cfg.out / "replay_log.jsonl"
    watchdog = (
        None if cfg.duration_s is None else cfg.duration_s + REPLAY_START_DELAY_S + REPLAY_WATCHDOG_MARGIN_S
    )
    stop.check()
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    recorder = _Recorder(f"/{cfg.node_name}")
    # The node's output goes to a file, not a pipe: a long run must never fill a pipe nobody reads.
    node_log_path = cfg.out / "node.log"
    node_log = node_log_path.open("w")
    node = subprocess.Popen(
        _node_command(cfg, topics), env=env, stdout=node_log, stderr=subprocess.STDOUT, text=True
    )
    rss = RssSampler(node.pid)
    replay_span = (0.0, 0.0)
    try:
        _wait_for_node(recorder, node, node_log_path, topics, cfg.startup_timeout_s, stop)
        rss.start()
        replay_started = time.monotonic()
        _run_replay(_replay_command(cfg, topics, replay_log), env, node, node_log_path, watchdog, stop)
        replay_span = (replay_started, time.monotonic())
        _raise_if_exited(node, node_log_path, "died during the replay (exit code {code})")
        _let_the_last_outputs_arrive(recorder, cfg.settle_s, stop)
    finally:
        rss.stop()
        _stop_process(node, signal.SIGINT, 10)
        node_log.close()
        with teardown_watchdog():  # the recorder's participant deletion can deadlock in Fast DDS
            recorder.close()
            rclpy.shutdown()
    return _Run(recorder.recording, replay_log, node_log_path, rss.samples, replay_span)


def _raise_if_exited(node: subprocess.Popen[str], log_path: Path, what: str) -> None:
    """EvaluationError `the localizer <what>: <its last error line> (log: ...)` once it has exited;
    `what` may name the exit code as ``{code}``."""
    code = node.poll()
    if code is not None:
        line = last_error_line(log_path.read_text(errors="replace"))
        raise EvaluationError(f"the localizer {what.format(code=code)}: {line} (log: {log_path})")


def _let_the_last_outputs_arrive(recorder: _Recorder, settle_s: float, stop: StopFlag) -> None:
    """Waits until no pose came for `settle_s`, then for one more diagnostics message (at most 3 s)."""
    last, quiet_since = recorder.pose_count(), time.monotonic()
    while time.monotonic() - quiet_since < settle_s:
        stop.check()
        stop.sleep(POLL_S)
        if recorder.pose_count() != last:
            last, quiet_since = recorder.pose_count(), time.monotonic()
    diag_count = len(recorder.recording.diagnostics)
    deadline = time.monotonic() + 3.0  # diagnostics come at 1 Hz
    while len(recorder.recording.diagnostics) == diag_count and time.monotonic() < deadline:
        stop.check()
        stop.sleep(0.05)


def _check_delivery(delivery: dict[str, Any], run: _Run, profile: str | None) -> None:
    """EvaluationError when images went missing between the replay and the node."""
    if delivery["delivery_ratio"] >= MIN_DELIVERY_RATIO:
        return
    last_diag = run.recording.diagnostics[-1] if run.recording.diagnostics else {}
    raise EvaluationError(
        f"images were lost between the replay and the localizer: only {delivery['sets_accounted']} of "
        f"{delivery['sets_published_complete']} published camera sets reached it or were accounted for "
        f"by it (delivery ratio {delivery['delivery_ratio']:.2f}, below {MIN_DELIVERY_RATIO:.2f}): "
        f"{delivery['poses_received']} poses received, {_diag_int(last_diag, 'dropped_sets')} sets "
        f"replaced by newer ones, {delivery['rejected_images']} images rejected, "
        f"{delivery['failed_sets']} inference failures, {delivery['withheld_poses']} poses withheld "
        f"(gate_uncertain); Fast DDS profile: {profile or 'none (defaults)'} "
        f"({PROFILE_ENV}); node log: {run.node_log}"
    )


def _run_record(
    cfg: NodeEvaluationConfig, profile: str | None, truth: GroundTruth, replay_summary: dict[str, Any]
) -> dict[str, Any]:
    """What was run, and what of the bag could not be read."""
    return {
        "bag": str(cfg.bag),
        "bundle": str(cfg.bundle),
        "rate": cfg.rate,
        "skip_empty_s": cfg.skip_empty_s,
        "mc_samples": cfg.mc_samples,
        "fastdds_profile": profile,
        "gt_corrupt_skipped": truth.corrupt,
        "gt_unreadable": truth.unreadable,
        "replay_corrupt_skipped": int(replay_summary.get("skipped_corrupt", 0)),
        "replay_unreadable": int(replay_summary.get("unreadable", 0)),
        "bag_read_error": truth.read_error or replay_summary.get("read_error"),
    }


def _soak(run: _Run, log: ReplayLog, dropped_sets: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The soak report and its time series (RSS, latency) of a `--duration` run."""
    latencies = pose_latencies(run.recording, log)
    # The run starts with the first published image, not with the replay's discovery wait.
    start = min(log.published_ns.values()) / 1e9 if log.published_ns else run.replay_span[0]
    end = run.replay_span[1]
    report = soak_report(run.rss_samples, latencies, start, end, dropped_sets, True)
    return report, soak_series(run.rss_samples, latencies, start, bin_s=max(1.0, (end - start) / 60))


def _write_results(
    cfg: NodeEvaluationConfig,
    recording: Recording,
    metrics: dict[str, Any],
    arrays: dict[str, Any],
    stop: StopFlag,
) -> None:
    stop.check()
    atomic_write_text(cfg.out / "poses.csv", _poses_csv(recording))
    try:
        from pose_regressor.evaluate_plots import plot_evaluation

        plot_evaluation(arrays, metrics, cfg.out)
    except ImportError as exc:  # matplotlib is a development dependency, not a robot one
        print(f"eval-node: no plots ({exc})")
    # Last: metrics.json marks a complete run.
    stop.check()
    atomic_write_text(cfg.out / "metrics.json", json_text(metrics))
