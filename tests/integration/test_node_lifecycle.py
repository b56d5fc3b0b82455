"""The localizer as a managed node, driven the way Nav2's lifecycle manager and `ros2 param set`
drive it: lifecycle and SetParameters service calls from another process over Fast DDS.

The node runs `pose-regressor run` on the small hand-built two-camera bundle
(`tests/unit/bundle_fixtures.py`); this process is the lifecycle manager, the camera driver and
the consumer of its poses and diagnostics.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped, PoseWithCovarianceStamped

from pose_regressor.bundle import ModelBundle, UncertainFlag
from pose_regressor.node_evaluation import NodeEvaluationConfig, _node_command
from tests.integration.node_client import RAW_TOPICS, Cameras, NodeProcess, RosPeer, statuses
from tests.unit.bundle_fixtures import make_bundle

pytestmark = pytest.mark.ros

NODE = "/localizer"
STATUS = "pose_regressor: /localizer"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> ModelBundle:
    return make_bundle(tmp_path_factory.mktemp("lifecycle") / "bundle")


@pytest.fixture
def peer() -> Iterator[RosPeer]:
    peer = RosPeer("lifecycle_manager")
    yield peer
    peer.close()


def _start(bundle: ModelBundle, env: dict[str, str], *ros_args: str) -> NodeProcess:
    return NodeProcess(["--bundle", str(bundle.path), "--ros-args", "-p", "mc_samples:=2", *ros_args], env)


def _pose_after_set(cameras: Cameras, poses: list[PoseStamped]) -> int:
    """Sends sets until one comes back as a pose; returns how many poses there are then."""
    before = len(poses)
    assert cameras.send_until(lambda: len(poses) > before), "no pose came back"
    return len(poses)


def test_every_legal_transition_repeats_illegal_ones_are_refused_and_shutdown_exits_0(
    bundle: ModelBundle, ros_env: dict[str, str], peer: RosPeer
) -> None:
    node = _start(bundle, ros_env, "-p", "autostart:=false")
    try:
        cameras = Cameras(peer, RAW_TOPICS)
        poses = peer.record(PoseStamped, f"{NODE}/pose")
        diagnostics = peer.record(DiagnosticArray, "/diagnostics")
        assert peer.state(NODE) == "unconfigured", node.log()  # autostart false: the manager's turn

        # Illegal requests: answered false with a log line; the process stays up.
        for state_needed, request in (("unconfigured", "activate"), ("unconfigured", "deactivate")):
            assert peer.state(NODE) == state_needed
            assert not peer.transition(NODE, request)
        assert peer.transition(NODE, "configure") and peer.transition(NODE, "activate")
        _pose_after_set(cameras, poses)
        assert not peer.transition(NODE, "configure"), "configure while active was accepted"
        assert not peer.transition_by_label(NODE, "cleanup")
        assert peer.transition(NODE, "deactivate")
        assert not peer.transition(NODE, "deactivate"), "deactivate twice was accepted"
        assert node.alive(), node.log()
        refused = node.wait_for_lines("refused lifecycle transition", 5, 5.0)
        assert len(refused) == 5, node.log()
        assert "'id 3' in state 'unconfigured': available transitions are configure, shutdown" in refused[0]

        # Nav2 pause/resume: deactivate -> activate, one subscription per camera, every set used once.
        assert peer.transition(NODE, "activate")
        _pose_after_set(cameras, poses)
        assert cameras.subscribers() == [1, 1]
        count = len(statuses(diagnostics, STATUS))
        assert peer.spin_until(lambda: len(statuses(diagnostics, STATUS)) > count, 5.0)
        assert statuses(diagnostics, STATUS)[-1][2]["unsynchronized_frames"] == "0"

        # 50 full cycles: subscriptions, threads, file descriptors and memory stay flat.
        assert peer.transition(NODE, "deactivate") and peer.transition(NODE, "cleanup")
        cycle = ("configure", "activate", "deactivate", "activate", "deactivate", "cleanup")
        baseline: dict[str, int] = {}
        for k in range(50):
            for name in cycle:
                assert peer.transition(NODE, name), f"cycle {k}: {name} failed\n{node.log()[-3000:]}"
            if k == 9:  # after warm-up (allocator pools, DDS entities of the first cycles)
                baseline = node.proc_stats()
        final = node.proc_stats()
        print(f"lifecycle cycles 10 -> 50: {baseline} -> {final}")
        # Fast DDS starts and ends short-lived threads (one came and went between two samples in CI);
        # a leak of one thread per cycle would add 40 here.
        assert final["threads"] <= baseline["threads"] + 2, (baseline, final)
        assert final["fds"] <= baseline["fds"], (baseline, final)
        assert final["rss_kb"] <= baseline["rss_kb"] * 1.02, (baseline, final)
        assert peer.spin_until(lambda: cameras.subscribers() == [0, 0], 5.0), cameras.subscribers()

        assert peer.transition(NODE, "configure") and peer.transition(NODE, "activate")
        _pose_after_set(cameras, poses)
        assert cameras.subscribers() == [1, 1]
        assert peer.transition_by_label(NODE, "shutdown")
        assert node.process.wait(timeout=10) == 0, node.log()
        assert not node.lines("Traceback"), node.log()
    finally:
        node.stop()


def test_parameters_take_effect_at_runtime_or_are_refused_with_a_reason(
    bundle: ModelBundle, ros_env: dict[str, str], peer: RosPeer, tmp_path: Path
) -> None:
    params_file = tmp_path / "params.yaml"
    # camera_timeout: 2 is an integer in YAML; plain ROS would refuse it for the double parameter
    params_file.write_text(
        "/**:\n  ros__parameters:\n    mc_sampels: 4\n    gate_uncertain: false\n    camera_timeout: 2\n"
    )
    node = NodeProcess(["--params", str(params_file), "--bundle", str(bundle.path)], ros_env)
    try:
        cameras = Cameras(peer, RAW_TOPICS)
        poses = peer.record(PoseWithCovarianceStamped, f"{NODE}/pose_with_covariance")
        diagnostics = peer.record(DiagnosticArray, "/diagnostics")
        _pose_after_set(cameras, poses)
        unknown = node.lines("unknown parameter")
        assert unknown and "mc_sampels (did you mean mc_samples?)" in unknown[0], node.log()
        assert repr(peer.get_parameter(NODE, "camera_timeout")) == "2.0"

        def diagnosed(key: str, value: str) -> bool:
            return any(v.get(key) == value for _, _, v in statuses(diagnostics, STATUS))

        # mc_samples: the bundle's (32) by default, then whatever is set.
        assert peer.spin_until(lambda: diagnosed("mc_samples", str(bundle.mc_samples)), 5.0)
        assert peer.set_parameter(NODE, "mc_samples", 4) == (True, "")
        del diagnostics[:]
        assert peer.spin_until(lambda: diagnosed("mc_samples", "4"), 5.0), statuses(diagnostics, STATUS)[-1:]

        assert peer.set_parameter(NODE, "map_frame", "robot1_map")[0]
        count = _pose_after_set(cameras, poses)
        assert poses[count - 1].header.frame_id == "robot1_map"

        # Rotation block: mc_samples 1 gives the floor covariance (isotropic about the map axes).
        from pose_regressor.covariance import to_convention
        from pose_regressor.uncertainty import estimate_from_samples

        assert peer.set_parameter(NODE, "mc_samples", 1)[0]
        for convention in ("fixed_axes", "rpy"):
            assert peer.set_parameter(NODE, "covariance_rotation", convention)[0]
            count = _pose_after_set(cameras, poses)
            msg = poses[count - 1]
            q = [msg.pose.pose.orientation.x, msg.pose.pose.orientation.y]
            q += [msg.pose.pose.orientation.z, msg.pose.pose.orientation.w]
            floor = estimate_from_samples([[0.0, 0.0, 0.0]], [q]).covariance
            expected = to_convention(q, floor, convention)
            assert list(msg.pose.covariance) == pytest.approx(list(expected.reshape(-1)), rel=1e-6, abs=1e-12)
        # covariance_inflation scales what is published (rpy here), not what the flag reads.
        assert peer.set_parameter(NODE, "covariance_inflation", 16)[0]  # an integer for the double
        count = _pose_after_set(cameras, poses)
        inflated = np.array(poses[count - 1].pose.covariance)
        assert list(inflated) == pytest.approx(list(16.0 * expected.reshape(-1)), rel=1e-6, abs=1e-12)
        # 0: the bundle's suggestion; this bundle was exported without one, so each pose's own
        assert peer.set_parameter(NODE, "covariance_inflation", 0)[0]
        assert node.wait_for_line("covariance_inflation = 0.0 (1: the bundle suggests none)", 5.0), node.log()
        count = _pose_after_set(cameras, poses)
        own = np.array(poses[count - 1].pose.covariance)
        assert list(own) == pytest.approx(list(expected.reshape(-1)), rel=1e-6, abs=1e-12)
        assert peer.set_parameter(NODE, "covariance_inflation", 1.0)[0]

        # Gating: every pose flagged uncertain (threshold 1e-9 m) is withheld; off again, poses return.
        assert peer.set_parameter(NODE, "max_position_std", 1e-9)[0]
        assert peer.set_parameter(NODE, "gate_uncertain", True)[0]
        count = len(poses)
        for _ in range(10):
            cameras.send()
            peer.spin_for(0.05)
        peer.spin_for(0.5)
        assert len(poses) == count, "a gated pose was published"
        # The log says why a pose is flagged (once per report interval: the pipeline's throttle).
        assert node.wait_for_line("pose uncertain: position std", 5.0), node.log()
        flagged = node.lines("pose uncertain: position std")[0]
        assert re.search(r"pose uncertain: position std [\d.]+ m > max_position_std [\d.]+ m", flagged), (
            flagged
        )
        assert peer.set_parameter(NODE, "gate_uncertain", False)[0]
        _pose_after_set(cameras, poses)

        refusals = [
            ("backend", "nonsense", "must be one of auto, tensorrt, onnxruntime, torch"),
            ("backend", "onnxruntime", "may change only while the node is unconfigured (it is active)"),
            ("bundle", str(tmp_path / "nowhere"), "nowhere does not exist"),
            ("bundle", str(bundle.path), "may change only while the node is unconfigured"),
            ("mc_samples", 1000, ""),  # rclpy's own range check
            ("covariance_rotation", "euler", "must be one of fixed_axes, rpy"),
            # between 0 (the bundle's) and 1 it would shrink the calibrated covariance
            ("covariance_inflation", 0.5, "must be 0 (the bundle's suggested inflation) or from 1 to 1e+06"),
            ("covariance_inflation", float("nan"), ""),
            ("camera_topics", ["front/image raw", "rear"], "is not a valid ROS topic name"),
            ("map_frame", "", "must be a frame name"),
            ("autostart", False, "read-only"),
            ("sync_slop", "wide", ""),  # type change: rclpy refuses
        ]
        for name, value, reason in refusals:
            ok, answer = peer.set_parameter(NODE, name, value)
            assert not ok, f"{name} = {value!r} was accepted"
            assert reason in answer and answer, f"{name}: {answer!r}"
        assert node.alive()
        assert len(node.wait_for_lines("refused parameter change", 5, 5.0)) >= 5, node.log()
        _pose_after_set(cameras, poses)

        # A structural parameter is accepted while unconfigured and used by the next configure.
        assert peer.transition(NODE, "deactivate") and peer.transition(NODE, "cleanup")
        other = make_bundle(tmp_path / "other bundle #1: on")
        assert peer.set_parameter(NODE, "bundle", str(other.path)) == (True, "")
        assert not peer.set_parameter(NODE, "bundle", str(tmp_path / "nowhere"))[0]
        assert peer.transition(NODE, "configure") and peer.transition(NODE, "activate")
        assert node.wait_for_line(f"bundle {other.path}:", 5.0), node.log()
        _pose_after_set(cameras, poses)
        assert not node.lines("Traceback"), node.log()
    finally:
        node.stop()


def test_covariance_inflation_0_names_a_suggestion_it_cannot_use(
    tmp_path: Path, ros_env: dict[str, str]
) -> None:
    """A hand-edited bundle: a suggestion that is no number from 1 to 1e6 is named (the node said
    the bundle had none), and eval_metrics that is no mapping failed the configure
    (`AttributeError: 'list' object has no attribute 'get'`)."""
    cases = {
        "string": ({"eval_metrics": {"error_correlation": {"suggested_covariance_inflation": "15.2"}}},
                   "but its suggested_covariance_inflation '15.2' is not a number from 1 to 1e+06"),
        "list": ({"eval_metrics": [15.2]}, "but this bundle was exported without one"),
    }  # fmt: skip
    for name, (provenance, line) in cases.items():
        bundle = make_bundle(tmp_path / name, provenance=provenance)
        node = _start(bundle, ros_env, "-p", "covariance_inflation:=0.0")
        try:
            assert node.wait_for_line("active: localizing", 15.0), node.log()
            assert node.lines(line), node.log()
            assert not node.lines("cannot configure"), node.log()
        finally:
            node.stop()


def test_eval_node_runs_the_node_without_a_params_files_covariance_inflation(
    tmp_path: Path, ros_env: dict[str, str]
) -> None:
    """eval-node scores each pose's own covariance: the node command it builds sets
    covariance_inflation:=1 after the user's arguments, and rcl lets the last assignment win over
    a deployment params file that sets 16 for the EKF (every NEES would be a 16th)."""
    found = {"frames": 15.2, "seconds": 1.52, "truncated": False, "suggested_covariance_inflation": 15.2}
    bundle = make_bundle(tmp_path / "b", provenance={"eval_metrics": {"error_correlation": found}})
    params = tmp_path / "deploy.yaml"
    params.write_text("/**:\n  ros__parameters:\n    covariance_inflation: 16.0\n")
    deployed = _start(bundle, ros_env, "--params-file", str(params))
    try:
        assert deployed.wait_for_line("needs covariance_inflation 15.2 (now 16)", 15.0), deployed.log()
    finally:
        deployed.stop()
    cfg = NodeEvaluationConfig(
        bag=tmp_path / "bag", bundle=bundle.path, extra_node_args=("--params-file", str(params))
    )
    command = _node_command(cfg, RAW_TOPICS)
    evaluated = NodeProcess(command[command.index("run") + 1 :], ros_env)
    try:
        assert evaluated.wait_for_line("needs covariance_inflation 15.2 (now 1)", 15.0), evaluated.log()
    finally:
        evaluated.stop()


def test_the_bundles_flag_thresholds_apply_until_the_parameters_are_set(
    tmp_path: Path, ros_env: dict[str, str], peer: RosPeer
) -> None:
    """A bundle exported with eval's suggested thresholds: the node flags (and here withholds) poses
    by them while max_position_std / max_rotation_std are 0, by the parameters once they are set,
    and by the bundle's again when they are set back to 0."""
    found = {"frames": 15.2, "seconds": 1.52, "truncated": False, "suggested_covariance_inflation": 15.2}
    strict = make_bundle(
        tmp_path / "strict",
        uncertain_flag=UncertainFlag(1e-9, 1e-9),
        provenance={"eval_metrics": {"error_correlation": found}},
    )
    # An integer on the command line for a double parameter is taken as the double it means.
    node = _start(
        strict,
        ros_env,
        *("-p", "gate_uncertain:=true", "-p", "transform_tolerance:=2", "-p", "covariance_inflation:=0.0"),
    )
    try:
        cameras = Cameras(peer, RAW_TOPICS)
        poses = peer.record(PoseStamped, f"{NODE}/pose")
        assert node.wait_for_line("uncertain flag: position std > 1e-09 m (the bundle's)", 10.0), node.log()
        # what an EKF needs, from the bundle's evaluation, with the value in force
        assert node.wait_for_line("needs covariance_inflation 15.2 (now 15.2, the bundle's)", 5.0), node.log()
        assert repr(peer.get_parameter(NODE, "transform_tolerance")) == "2.0"

        def withheld() -> bool:
            count = len(poses)
            for _ in range(10):
                cameras.send()
                peer.spin_for(0.05)
            peer.spin_for(0.5)
            return len(poses) == count

        assert withheld(), "a pose over the bundle's thresholds was published"
        assert peer.set_parameter(NODE, "max_position_std", 1000.0)[0]
        assert peer.set_parameter(NODE, "max_rotation_std", 3.0)[0]
        _pose_after_set(cameras, poses)  # the parameters now rule: nothing is flagged
        ok, reason = peer.set_parameter(NODE, "max_position_std", "0")  # a string: refused
        assert not ok and "type" in reason, reason
        # `ros2 param set /localizer max_position_std 0` sends an integer: taken as the double 0.0
        assert peer.set_parameter(NODE, "max_position_std", 0) == (True, "")  # back to the bundle's
        assert repr(peer.get_parameter(NODE, "max_position_std")) == "0.0"
        assert node.wait_for_line("max_position_std = 0.0 (the bundle's 1e-09)", 5.0), node.log()
        assert withheld(), "max_position_std 0 did not bring back the bundle's threshold"
        assert node.alive() and not node.lines("Traceback"), node.log()
    finally:
        node.stop()


def test_configure_failure_with_a_manager_is_one_line_and_the_node_stays_up(
    tmp_path: Path, ros_env: dict[str, str], peer: RosPeer
) -> None:
    nested = make_bundle(tmp_path / "nested")
    (nested.path / "bundle.yaml").write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    node = NodeProcess(
        [
            "--bundle",
            str(nested.path),
            "--ros-args",
            "-p",
            "autostart:=false",
            "-p",
            "image_transport:=[raw]",
        ],
        ros_env,
    )
    try:
        assert peer.state(NODE) == "unconfigured"
        assert not peer.transition(NODE, "configure")
        assert node.wait_for_line("cannot configure:", 5.0)
        errors = node.lines("[ERROR]")
        assert len(errors) == 1 and "nested too deeply" in errors[0], node.log()
        assert node.alive() and peer.state(NODE) == "unconfigured"
        good = make_bundle(tmp_path / "good")
        assert peer.set_parameter(NODE, "bundle", str(good.path))[0]
        assert peer.transition(NODE, "configure"), node.log()
        assert not node.lines("Traceback"), node.log()
    finally:
        node.stop()
