"""The node's plain helpers: the initialpose policy and `pose-regressor run`'s ROS arguments
(checked by letting rcl parse them, as the node will)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import rclpy
from rclpy.node import Node

from pose_regressor.cli import ros_arguments
from pose_regressor.initial_pose import InitialPosePolicy


def test_initialpose_first_confident_pose_then_each_new_subscriber_twice() -> None:
    policy = InitialPosePolicy(repeat_after_s=1.0)
    assert not policy.on_pose(False), "an uncertain pose is never an initial pose"
    assert policy.on_pose(True) and not policy.on_pose(True), "the first confident pose, once"
    assert not policy.on_check(0, 0.0, True)
    assert not policy.on_check(0, 5.0, True)
    assert policy.on_check(1, 10.0, True), "a subscriber appeared: send the latest pose"
    assert not policy.on_check(1, 10.5, True)
    assert policy.on_check(1, 11.0, True), "and once more a moment later (DDS matching is not symmetric)"
    assert not any(policy.on_check(1, t, True) for t in (12.0, 60.0, 600.0)), "never again on its own"
    assert not policy.on_check(0, 700.0, True)  # AMCL went away ...
    assert policy.on_check(1, 701.0, True)  # ... and came back: it gets one too
    fresh = InitialPosePolicy()
    assert not fresh.on_check(1, 0.0, False), "nothing to send before a confident pose"
    assert fresh.on_pose(True), "the first confident pose still goes out to that subscriber"


NASTY = [
    "/data/models #1",
    "/data/a: b",
    "123",
    "on",
    '/data/it\'s "quoted" \\ back',
    "/data/ünïcode ✓",
    "/data/[list], {map}",
    "~/bundles/*&!%",
]


@pytest.mark.parametrize("path", NASTY)
def test_bundle_path_reaches_the_node_exactly(path: str) -> None:
    args = argparse.Namespace(
        params=None, bundle=Path(path), camera_topics=["front/image_raw", "/a #b"], use_sim_time=False
    )
    context = rclpy.Context()
    rclpy.init(args=["localizer", *ros_arguments(args, [])], context=context)
    try:
        node = Node("localizer", context=context)
        overrides = node._parameter_overrides
        assert overrides["bundle"].value == str(Path(path))
        assert overrides["camera_topics"].value == ["front/image_raw", "/a #b"]
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
