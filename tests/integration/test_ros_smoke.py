"""The pip-installed ROS 2 works where tests run: two processes exchange Images over Fast DDS."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

PEERS = Path(__file__).with_name("ros_peers.py")
pytestmark = pytest.mark.ros


def test_two_processes_exchange_images_over_fast_dds(ros_env: dict[str, str]) -> None:
    receiver = subprocess.Popen(
        [sys.executable, str(PEERS), "receive", "5", "30"],
        env=ros_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    publisher = subprocess.Popen(
        [sys.executable, str(PEERS), "publish", "40"],
        env=ros_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = receiver.communicate(timeout=60)
    finally:
        publisher.terminate()
        publisher.wait(timeout=10)
    assert receiver.returncode == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    assert report["rmw"] == "rmw_fastrtps_cpp"
    received = report["received"]
    assert len(received) == 5, f"only {len(received)} images arrived; stderr: {err}"
    assert all(r["intact"] and r["size"] == [32, 24] and r["encoding"] == "rgb8" for r in received)
    seqs = [r["seq"] for r in received]
    assert seqs == sorted(seqs)  # reliable QoS: in order


def test_other_domain_hears_nothing(ros_env: dict[str, str]) -> None:
    other = dict(ros_env, ROS_DOMAIN_ID=str((int(ros_env["ROS_DOMAIN_ID"]) + 50) % 200 + 1))
    receiver = subprocess.Popen(
        [sys.executable, str(PEERS), "receive", "1", "4"],
        env=other,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    publisher = subprocess.Popen(
        [sys.executable, str(PEERS), "publish", "6"],
        env=ros_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = receiver.communicate(timeout=30)
    finally:
        publisher.terminate()
        publisher.wait(timeout=10)
    assert receiver.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1])["received"] == []
