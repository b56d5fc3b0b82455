"""Node overhead benchmark: end-to-end latency of the localizer minus the engine's own time.

    .venv/bin/python scripts/bench_node.py [--seconds 20] [--json out/bench_node.json]

For 1 and 4 cameras of 640x480 rgb8 at 30 Hz, a publisher in this process sends synchronized
image sets to the localizer (a separate process, Fast DDS on loopback) and records each pose's
receive time. Latency = receive time - publish time of the set's last image; the overhead is
that minus the engine time the node reports in /diagnostics. The last run uses a bundle whose
engine is slower than the frame period (overload): keep-latest must keep latency near one
engine period instead of queueing. Runs with config/fastdds_large_images.xml unless
FASTRTPS_DEFAULT_PROFILES_FILE names another profile. Models are untrained (timing only).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseWithCovarianceStamped
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image

from pose_regressor.messages import ns_from_time, time_from_ns
from pose_regressor.rig import preset_rig
from pose_regressor_training.checkpoint import Checkpoint, DatasetInfo, save_checkpoint
from pose_regressor_training.export import export_bundle
from pose_regressor_training.models import ModelConfig, build_model

RATE_HZ = 30.0
QUAD = ["front", "left", "back", "right"]
LARGE_IMAGES_PROFILE = (
    Path(__file__).resolve().parents[1] / "ros2_ws/src/pose_regressor/config/fastdds_large_images.xml"
)


def resnet(name: str, size: int) -> ModelConfig:
    return ModelConfig(backbone=name, image_width=size, image_height=size, hidden_dim=512)


def make_bundle(root: Path, rig_name: str, config: ModelConfig) -> Path:
    rig = preset_rig(rig_name, 640, 480)
    config = dataclasses.replace(config, num_cameras=len(rig.cameras))
    model = build_model(config)
    checkpoint = root / f"{rig_name}_{config.backbone}.pt"
    untrained = Checkpoint(config, model.state_dict(), rig, dataset=DatasetInfo(name="benchmark"))
    save_checkpoint(checkpoint, untrained)
    return export_bundle(checkpoint, root / checkpoint.stem).path


def run(
    bundle: Path, cameras: list[str], seconds: float, mc_samples: int, node_params: list[str]
) -> dict[str, float]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    node_proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pose_regressor.cli",
            "run",
            "--bundle",
            str(bundle),
            "--ros-args",
            "-p",
            f"mc_samples:={mc_samples}",
            *[arg for param in node_params for arg in ("-p", param)],
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    node = rclpy.create_node("bench_publisher")
    pubs = [node.create_publisher(Image, f"/{c}/image_raw", qos_profile_sensor_data) for c in cameras]
    published: dict[int, int] = {}
    received: dict[int, int] = {}
    engine_ms: list[float] = []
    dropped = [0]
    last_diag: dict[str, str] = {}

    def on_pose(msg: PoseWithCovarianceStamped) -> None:
        received[ns_from_time(msg.header.stamp)] = time.monotonic_ns()

    def on_diag(msg: DiagnosticArray) -> None:
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            if "engine_ms_p50" in values and values["engine_ms_p50"] != "nan":
                engine_ms.append(float(values["engine_ms_p50"]))
                dropped[0] = int(values["dropped_sets"])
                last_diag.update(values)

    qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    node.create_subscription(PoseWithCovarianceStamped, "/localizer/pose_with_covariance", on_pose, qos)
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, qos)
    deadline = time.monotonic() + 60
    while not all(p.get_subscription_count() > 0 for p in pubs) and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (480, 640, 3), dtype=np.uint8).tobytes() for _ in cameras]
    messages = []
    for data in frames:
        msg = Image()
        msg.height, msg.width, msg.encoding, msg.step, msg.data = 480, 640, "rgb8", 640 * 3, data
        messages.append(msg)
    period = 1.0 / RATE_HZ
    start = time.monotonic()
    k = 0
    while time.monotonic() - start < seconds:
        due = start + k * period
        while time.monotonic() < due:
            rclpy.spin_once(node, timeout_sec=max(0.0, min(0.002, due - time.monotonic())))
        stamp = 1_700_000_000_000_000_000 + round(k * period * 1e9)
        for pub, msg in zip(pubs, messages, strict=True):
            msg.header.stamp = time_from_ns(stamp)
            msg.header.frame_id = "camera"
            pub.publish(msg)
        published[stamp] = time.monotonic_ns()
        k += 1
    mid_diag = dict(last_diag)
    end = time.monotonic() + 3.0
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.05)
    node.destroy_node()
    node_proc.send_signal(signal.SIGINT)
    node_proc.wait(timeout=15)
    warm = sorted(published)[int(RATE_HZ * 2) :]  # skip the first 2 s (warm-up)
    latencies = np.array([(received[s] - published[s]) / 1e6 for s in warm if s in received])
    engine = float(np.median(engine_ms[-3:])) if engine_ms else float("nan")
    return {
        "cameras": len(cameras),
        "sets_published": len(warm),
        "poses_received": len(latencies),
        "output_ratio": len(latencies) / max(len(warm), 1),
        "dropped_sets": dropped[0],
        "e2e_latency_ms_p50": float(np.percentile(latencies, 50)),
        "e2e_latency_ms_p99": float(np.percentile(latencies, 99)),
        "engine_ms_p50": engine,
        "engine_ms_p99": float(mid_diag.get("engine_ms_p99", "nan")),
        "overhead_ms_p50": float(np.percentile(latencies, 50)) - engine,
        "overhead_ms_p99": float(np.percentile(latencies, 99)) - engine,
        "input_rate_hz": min(float(v) for k, v in mid_diag.items() if k.startswith("input_rate_hz/")),
        "e2e_latency_p99_in_engine_periods": float(np.percentile(latencies, 99)) / engine,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--mc-samples", type=int, default=16)
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--node-param", action="append", default=[], metavar="NAME:=VALUE", help="extra node parameter"
    )
    args = parser.parse_args()
    os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    # Without it, Fast DDS loses most 0.9 MB best-effort images (see the profile's comment).
    os.environ.setdefault("FASTRTPS_DEFAULT_PROFILES_FILE", str(LARGE_IMAGES_PROFILE))
    small = ModelConfig(backbone="small_cnn", image_width=64, image_height=48)
    results = {}
    rclpy.init()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cases = [
            ("1 camera, small_cnn 64x48", make_bundle(root, "mono", small), ["front"]),
            ("4 cameras, small_cnn 64x48", make_bundle(root, "quad", small), QUAD),
            ("4 cameras, resnet18 224x224", make_bundle(root, "quad", resnet("resnet18", 224)), QUAD),
            (
                "4 cameras, resnet50 320x320 (overload)",
                make_bundle(root, "quad", resnet("resnet50", 320)),
                QUAD,
            ),
        ]
        for name, bundle, cams in cases:
            print(f"== {name}", flush=True)
            results[name] = run(bundle, cams, args.seconds, args.mc_samples, args.node_param)
    rclpy.shutdown()
    print(
        "| case | input rate (Hz) | output/input | dropped | end-to-end latency p50 / p99 (ms) | "
        "engine p50 / p99 (ms) | overhead p50 / p99 (ms) | p99 / engine p50 |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(
            f"| {name} | {r['input_rate_hz']:.1f} | {r['output_ratio']:.2f} | {r['dropped_sets']} | "
            f"{r['e2e_latency_ms_p50']:.1f} / {r['e2e_latency_ms_p99']:.1f} | {r['engine_ms_p50']:.1f} / "
            f"{r['engine_ms_p99']:.1f} | "
            f"{r['overhead_ms_p50']:.1f} / {r['overhead_ms_p99']:.1f} | "
            f"{r['e2e_latency_p99_in_engine_periods']:.2f} |"
        )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
