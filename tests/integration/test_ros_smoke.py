"""The pip-installed ROS 2 works where tests run: two processes exchange Images over Fast DDS."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

PEERS = Path(__file__).with_name("ros_peers.py")
LARGE_IMAGES_PROFILE = (
    Path(__file__).parents[2] / "ros2_ws/src/pose_regressor/config/fastdds_large_images.xml"
)
pytestmark = pytest.mark.ros


def exchange(
    receiver_env: dict[str, str], publisher_env: dict[str, str], count: int, seconds: float
) -> tuple[dict[str, Any], str]:
    """Starts a receiver and a publisher process; returns the receiver's report and its stderr."""
    receiver = subprocess.Popen(
        [sys.executable, str(PEERS), "receive", str(count), str(seconds)],
        env=receiver_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    publisher = subprocess.Popen(
        [sys.executable, str(PEERS), "publish", str(seconds + 10)],
        env=publisher_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = receiver.communicate(timeout=seconds + 30)
    finally:
        publisher.terminate()
        publisher.wait(timeout=10)
    assert receiver.returncode == 0, err
    report: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return report, err


def test_two_processes_exchange_images_over_fast_dds(ros_env: dict[str, str]) -> None:
    report, err = exchange(ros_env, ros_env, count=5, seconds=30)
    assert report["rmw"] == "rmw_fastrtps_cpp"
    received = report["received"]
    assert len(received) == 5, f"only {len(received)} images arrived; stderr: {err}"
    assert all(r["intact"] and r["size"] == [32, 24] and r["encoding"] == "rgb8" for r in received)
    seqs = [r["seq"] for r in received]
    assert seqs == sorted(seqs)  # reliable QoS: in order


def test_other_domain_hears_nothing(ros_env: dict[str, str]) -> None:
    other = dict(ros_env, ROS_DOMAIN_ID=str((int(ros_env["ROS_DOMAIN_ID"]) + 50) % 200 + 1))
    report, _ = exchange(other, ros_env, count=1, seconds=4)
    assert report["received"] == []


def test_large_image_profile_delivers_four_640x480_cameras_at_30_hz(ros_env: dict[str, str]) -> None:
    """With Fast DDS defaults most of these best-effort images are lost (0.9 MB each does not fit
    the shared-memory segment and overflows the UDP socket buffer); with our profile they arrive."""
    env = dict(ros_env, FASTRTPS_DEFAULT_PROFILES_FILE=str(LARGE_IMAGES_PROFILE))
    sets = 60
    receiver = subprocess.Popen(
        [sys.executable, str(PEERS), "count", str(sets), "40"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    publisher = subprocess.run(
        [sys.executable, str(PEERS), "burst", str(sets), "30"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    out, err = receiver.communicate(timeout=60)
    assert publisher.returncode == 0 and receiver.returncode == 0, publisher.stderr + err
    assert "error" not in (publisher.stderr + err).lower(), publisher.stderr + err  # profile parsed
    received = json.loads(out.strip().splitlines()[-1])["received"]
    assert min(received.values()) >= 0.95 * sets, received
