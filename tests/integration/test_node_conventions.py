"""The localizer among other ROS 2 nodes: namespaces and remapping with the shipped params file,
image_transport naming against a driver that offers raw and compressed images, a late AMCL-like
initialpose subscriber, map -> odom on /tf, camera_info checks and diagnostics that say why no
pose comes. Every peer is a real process or a separate rclpy context over Fast DDS.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped, PoseWithCovarianceStamped, TransformStamped
from rcl_interfaces.srv import SetParametersAtomically
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import CameraInfo

from pose_regressor.bundle import ModelBundle
from pose_regressor.rig import PinholeIntrinsics, Rig, RigCamera
from pose_regressor.transforms import map_to_odom
from tests.integration.node_client import RAW_TOPICS, Cameras, NodeProcess, RosPeer, pose_stamps, statuses
from tests.unit.bundle_fixtures import CAMERA_SIZE, CAMERAS, make_bundle

pytestmark = pytest.mark.ros

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_PARAMS = ROOT / "ros2_ws" / "src" / "pose_regressor" / "config" / "localize.yaml"
PEERS = Path(__file__).with_name("ros_peers.py")
NODE = "/localizer"
TOLERANCE_NS = 250_000_000  # transform_tolerance: how far the node post-dates its transforms


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> ModelBundle:
    # A path that YAML would cut ("#"), read as a mapping (": ") or as a bool ("on").
    root = tmp_path_factory.mktemp("conventions") / "models #1: on" / "bundle"
    root.parent.mkdir()
    intrinsics = PinholeIntrinsics.from_hfov(*CAMERA_SIZE, 90.0)
    return make_bundle(root, rig=Rig(tuple(RigCamera(name, intrinsics) for name in CAMERAS)))


@pytest.fixture
def peer() -> Iterator[RosPeer]:
    peer = RosPeer("driver_and_consumer")
    yield peer
    peer.close()


def _localizer(bundle: ModelBundle, env: dict[str, str], *ros_args: str) -> NodeProcess:
    """`pose-regressor run` on `bundle` with 2 MC samples and `ros_args` after `--ros-args`."""
    return NodeProcess(["--bundle", str(bundle.path), "--ros-args", "-p", "mc_samples:=2", *ros_args], env)


def _pose(msg: PoseStamped | PoseWithCovarianceStamped) -> tuple[np.ndarray, np.ndarray]:
    pose = msg.pose.pose if isinstance(msg, PoseWithCovarianceStamped) else msg.pose
    p, o = pose.position, pose.orientation
    return np.array([p.x, p.y, p.z]), np.array([o.x, o.y, o.z, o.w])


def test_namespaced_run_with_the_shipped_params_file_and_remapped_camera(
    bundle: ModelBundle, ros_env: dict[str, str], peer: RosPeer
) -> None:
    """Under /robot1 the shipped file applies (its /**: key), the default camera topics are
    relative (robot1/front/image_raw), a camera is remapped on the command line, outputs and
    initialpose live in the namespace and the diagnostics name the node; the bundle path with
    '#', ': ' and 'on' in it arrives exactly."""
    params = yaml.safe_load(SHIPPED_PARAMS.read_text())
    assert list(params) == ["/**"]
    node = NodeProcess(
        [
            *("--params", str(SHIPPED_PARAMS), "--bundle", str(bundle.path), "--ros-args"),
            *("-r", "__ns:=/robot1", "-r", "rear/image_raw:=/rig/rear_cam/image"),
            *("-p", "publish_initialpose:=true", "-p", "mc_samples:=2"),
        ],
        ros_env,
    )
    try:
        cameras = Cameras(peer, ["/robot1/front/image_raw", "/rig/rear_cam/image"])
        poses = peer.record(PoseWithCovarianceStamped, "/robot1/localizer/pose_with_covariance")
        initial = peer.record(PoseWithCovarianceStamped, "/robot1/initialpose")
        diagnostics = peer.record(DiagnosticArray, "/diagnostics")
        assert cameras.send_until(lambda: bool(poses) and bool(initial)), node.log()
        assert poses[-1].header.frame_id == "map"  # the shipped file's value
        assert node.lines(f"bundle {bundle.path}:"), node.log()
        assert peer.spin_until(lambda: bool(statuses(diagnostics, "pose_regressor: /robot1/localizer")), 5.0)
        names = dict(peer.node.get_topic_names_and_types())
        assert "/front/image_raw" not in names and "/localizer/pose" not in names
        assert not node.lines("unknown parameter") and not node.lines("Traceback"), node.log()
        assert not node.lines("not metres"), node.log()  # a bundle of metres says nothing of units
    finally:
        node.stop()


def test_image_transport_naming_with_a_driver_offering_raw_and_compressed(
    bundle: ModelBundle, ros_env: dict[str, str], peer: RosPeer
) -> None:
    """A driver publishes Image on <base> and CompressedImage on <base>/compressed; one node per
    setting subscribes to exactly its transport's topic and localizes. The compressed one is set
    the way image_transport's own parameter is, one string (`image_transport:=compressed`)."""
    setting = {"raw": "[raw]", "compressed": "compressed"}
    nodes = {
        transport: NodeProcess(
            [
                *("--bundle", str(bundle.path), "--camera-topics", *RAW_TOPICS, "--ros-args"),
                *(
                    "-r",
                    f"__ns:=/{transport}",
                    "-p",
                    f"image_transport:={setting[transport]}",
                    "-p",
                    "mc_samples:=2",
                ),
            ],
            ros_env,
        )
        for transport in ("raw", "compressed")
    }
    try:
        raw = Cameras(peer, RAW_TOPICS)
        compressed = Cameras(peer, [f"{t}/compressed" for t in RAW_TOPICS], compressed=True)
        poses = {t: peer.record(PoseStamped, f"/{t}/localizer/pose") for t in nodes}

        def both_localize() -> bool:
            return all(poses.values())

        deadline = time.monotonic() + 20.0
        while not both_localize() and time.monotonic() < deadline:
            stamp = raw.send()
            compressed.send(stamp)
            peer.spin_until(both_localize, 0.1)
        assert both_localize(), {t: n.log() for t, n in nodes.items()}
        assert raw.subscribers() == [1, 1] and compressed.subscribers() == [1, 1]
        for transport, node in nodes.items():
            base = "/front/image_raw" + ("/compressed" if transport == "compressed" else "")
            assert node.lines(f"on {base}, "), node.log()
    finally:
        for node in nodes.values():
            node.stop()


def test_initialpose_reaches_an_amcl_started_10_s_after_the_first_confident_pose(
    bundle: ModelBundle, ros_env: dict[str, str], peer: RosPeer
) -> None:
    node = _localizer(bundle, ros_env, "-p", "publish_initialpose:=true")
    amcl = None
    try:
        cameras = Cameras(peer, RAW_TOPICS)
        poses = peer.record(PoseStamped, "/localizer/pose")
        assert cameras.send_until(lambda: bool(poses)), node.log()
        first = time.monotonic()
        while time.monotonic() - first < 10.0:  # the robot keeps localizing at 10 Hz
            cameras.send()
            peer.spin_for(0.1)
        # AMCL's subscription: reliable, volatile (system default QoS), in its own process.
        amcl = subprocess.Popen(
            [sys.executable, str(PEERS), "initialpose", "/initialpose", "15"],
            env=ros_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 20.0
        while amcl.poll() is None and time.monotonic() < deadline:
            cameras.send()
            peer.spin_for(0.1)
        out, err = amcl.communicate(timeout=10)
        received = json.loads(out)
        assert received["count"] >= 1, err + node.log()
        assert received["frame_id"] == "map"
        assert received["stamp_ns"] in pose_stamps(poses), "initialpose is not one of the published poses"
        # Sets go at 10 Hz with stamps 50 ms apart: 10 s later the stamps have moved on by 5 s.
        # The late subscriber gets a recent pose, not the first one (sent before it existed).
        assert received["stamp_ns"] > pose_stamps(poses)[0] + 4_500_000_000, "an old pose was sent"
    finally:
        if amcl is not None and amcl.poll() is None:
            amcl.kill()
        node.stop()


def _tf_static_qos() -> QoSProfile:
    return QoSProfile(
        depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
    )


def _odom_at(stamp: int) -> tuple[np.ndarray, np.ndarray]:
    """odom -> base_link at `stamp`: moving 1 cm per 50 ms frame, turned 30 degrees."""
    x = (stamp - 1_700_000_000_000_000_000) / 5e9
    return np.array([1.0 + x, 2.0, 0.0]), Rotation.from_euler("z", 30, degrees=True).as_quat()


def _odom_message(stamp: int) -> Any:
    """/tf's odom -> base_link at `stamp` (`_odom_at`), as odometry publishes it."""
    from tf2_msgs.msg import TFMessage

    t, q = _odom_at(stamp)
    msg = TransformStamped()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
    msg.header.frame_id, msg.child_frame_id = "odom", "base_link"
    tr, rot = msg.transform.translation, msg.transform.rotation
    tr.x, tr.y, tr.z = (float(v) for v in t)
    rot.x, rot.y, rot.z, rot.w = (float(v) for v in q)
    return TFMessage(transforms=[msg])


def _map_transforms(tf_out: list[Any], child: str) -> list[TransformStamped]:
    """The transforms map -> `child` among the recorded /tf messages."""
    return [
        t for m in tf_out for t in m.transforms if t.header.frame_id == "map" and t.child_frame_id == child
    ]


def test_tf_map_to_odom_like_amcl_and_map_to_base_link_without_odometry(
    bundle: ModelBundle, ros_env: dict[str, str], peer: RosPeer
) -> None:
    from tf2_msgs.msg import TFMessage

    tf_qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    tf_out = peer.record(TFMessage, "/tf", tf_qos)
    tf_pub = peer.node.create_publisher(TFMessage, "/tf", tf_qos)
    node = _localizer(bundle, ros_env, "-p", "publish_tf:=true", "-p", "transform_tolerance:=0.25")
    # odom -> base_link (`_odom_at`) published at the image stamps.

    try:
        cameras = Cameras(peer, RAW_TOPICS)
        poses = peer.record(PoseStamped, "/localizer/pose")

        def ours(child: str) -> list[TransformStamped]:
            return _map_transforms(tf_out, child)

        deadline = time.monotonic() + 20.0
        while len(ours("odom")) < 3 and time.monotonic() < deadline:
            stamp = cameras.next_stamp()
            tf_pub.publish(_odom_message(stamp))
            peer.spin_for(0.01)
            cameras.send(stamp)
            peer.spin_for(0.1)
        assert len(ours("odom")) >= 3, node.log()
        by_stamp = {s: m for s, m in zip(pose_stamps(poses), poses, strict=True)}
        assert peer.spin_until(lambda: len(poses) >= len(ours("odom")), 5.0)
        for transform in ours("odom"):
            stamp = transform.header.stamp.sec * 1_000_000_000 + transform.header.stamp.nanosec
            image_stamp = stamp - 250_000_000  # post-dated by transform_tolerance
            pose = by_stamp[image_stamp]
            expected_t, expected_q = map_to_odom(*_pose(pose), *_odom_at(image_stamp))
            tr, rot = transform.transform.translation, transform.transform.rotation
            assert [tr.x, tr.y, tr.z] == pytest.approx(list(expected_t), abs=1e-6)
            got = np.array([rot.x, rot.y, rot.z, rot.w])
            assert abs(float(got @ expected_q)) == pytest.approx(1.0, abs=1e-9)
        assert not ours("base_link")
    finally:
        node.stop()

    # Without an odometry frame: map -> base_link is the pose itself.
    del tf_out[:]
    node = _localizer(bundle, ros_env, "-p", "publish_tf:=true", "-p", 'odom_frame:=""')
    try:
        cameras = Cameras(peer, RAW_TOPICS, start_ns=1_800_000_000_000_000_000)
        assert cameras.send_until(lambda: bool(ours("base_link"))), node.log()
        transform = ours("base_link")[0]
        stamp = transform.header.stamp.sec * 1_000_000_000 + transform.header.stamp.nanosec - 1_000_000_000
        assert peer.spin_until(lambda: stamp in pose_stamps(poses), 5.0)
        pose = dict(zip(pose_stamps(poses), poses, strict=True))[stamp]
        t, _ = _pose(pose)
        tr = transform.transform.translation
        assert [tr.x, tr.y, tr.z] == pytest.approx(list(t), abs=1e-9)
    finally:
        node.stop()


def test_diagnostics_name_the_camera_whose_stamps_are_off_and_camera_info_mismatches(
    bundle: ModelBundle, ros_env: dict[str, str], peer: RosPeer
) -> None:
    node = _localizer(bundle, ros_env, "-p", "camera_timeout:=0.5")
    try:
        cameras = Cameras(peer, RAW_TOPICS)
        poses = peer.record(PoseStamped, "/localizer/pose")
        diagnostics = peer.record(DiagnosticArray, "/diagnostics")
        info = [peer.node.create_publisher(CameraInfo, f"/{c}/camera_info", 10) for c in ("front", "rear")]
        assert cameras.send_until(lambda: bool(poses)), node.log()

        # camera_info: front as calibrated, rear with another lens and another frame.
        rig = bundle.provenance["rig"]["cameras"]
        for k, publisher in enumerate(info):
            cam = rig[k]
            msg = CameraInfo()
            msg.header.frame_id = f"{cam['name']}_optical_frame" if k == 0 else "wrong_frame"
            msg.width, msg.height = cam["width"], cam["height"]
            fx = cam["fx"] * (1.0 if k == 0 else 1.3)
            msg.k = [fx, 0.0, cam["cx"], 0.0, cam["fy"], cam["cy"], 0.0, 0.0, 1.0]
            for _ in range(3):
                publisher.publish(msg)
        assert node.wait_for_line("camera rear: camera_info fx", 10.0), node.log()
        assert node.lines("wrong_frame") and node.lines(
            "camera front: camera_info on /front/camera_info matches"
        )

        # The rear camera's clock runs 20 ms late, then 2 h ahead: images keep coming, no set
        # forms, and the diagnostics warn naming it and the offset.
        name = "pose_regressor: /localizer"
        for offset_ns, text in ((20_000_000, "20.0 ms"), (7_200_000_000_000, "7200.000 s")):
            count = len(statuses(diagnostics, name))

            def warned(text: str = text, count: int = count) -> bool:
                return any(
                    level == 1 and "rear" in message and text in message
                    for level, message, _ in statuses(diagnostics, name)[count:]
                )

            deadline = time.monotonic() + 10.0
            while not warned() and time.monotonic() < deadline:
                cameras.send(offsets_ns=[0, offset_ns])
                peer.spin_for(0.05)
            assert warned(), statuses(diagnostics, name)[-3:]
        assert node.alive() and not node.lines("Traceback"), node.log()
    finally:
        node.stop()


def test_camera_timeout_follows_sim_time(bundle: ModelBundle, ros_env: dict[str, str], peer: RosPeer) -> None:
    """/clock runs at half speed: a 1.6 s wall-clock pause is 0.8 s of node time, under the 1 s
    camera_timeout, so no camera is reported stopped; a longer pause is."""
    clock = peer.node.create_publisher(Clock, "/clock", 10)
    sim_ns = 1_700_000_000_000_000_000
    node = NodeProcess(
        [*("--bundle", str(bundle.path), "--use-sim-time", "--ros-args"), *("-p", "mc_samples:=2")],
        ros_env,
    )
    try:
        cameras = Cameras(peer, RAW_TOPICS)
        poses = peer.record(PoseStamped, "/localizer/pose")
        diagnostics = peer.record(DiagnosticArray, "/diagnostics")
        name = "pose_regressor: /localizer"

        def run(wall_s: float, images: bool) -> None:
            nonlocal sim_ns
            end = time.monotonic() + wall_s
            while time.monotonic() < end:
                sim_ns += 50_000_000  # 0.05 s of sim time per 0.1 s of wall time
                msg = Clock()
                msg.clock.sec, msg.clock.nanosec = divmod(sim_ns, 1_000_000_000)
                clock.publish(msg)
                if images:
                    cameras.send(sim_ns)
                peer.spin_for(0.1)

        assert peer.spin_until(lambda: cameras.subscribers() == [1, 1], 30.0), node.log()
        run(3.0, True)
        assert poses, node.log()
        start = len(statuses(diagnostics, name))
        run(1.6, False)  # 0.8 s of sim time
        run(2.5, True)
        short = statuses(diagnostics, name)[start:]
        assert short and not any("stopped" in m or "no images" in m for _, m, _ in short), short
        start = len(statuses(diagnostics, name))
        run(5.0, False)  # 2.5 s of sim time
        long = statuses(diagnostics, name)[start:]
        assert any(level == 2 and "no images" in message for level, message, _ in long), long
    finally:
        node.stop()


def test_a_bundle_whose_positions_are_not_metres_is_named_at_start(
    tmp_path: Path, ros_env: dict[str, str], peer: RosPeer
) -> None:
    """REP 103: ROS lengths are metres. A bundle trained on an import without --scale still runs,
    and its node says in its log that everything downstream will misread its positions."""
    dataset = {"kind": "folder", "root": "/data/fox", "length_unit": "units"}
    unscaled = make_bundle(tmp_path / "unscaled", provenance={"dataset": dataset})
    node = _localizer(unscaled, ros_env)
    try:
        assert node.wait_for_line("not metres (an import without --scale)", 60.0), node.log()
        poses = peer.record(PoseStamped, "/localizer/pose")
        assert Cameras(peer, RAW_TOPICS).send_until(lambda: bool(poses)), node.log()
    finally:
        node.stop()


def test_missing_camera_black_localizes_without_a_stopped_camera_and_says_so(
    bundle: ModelBundle, ros_env: dict[str, str], peer: RosPeer
) -> None:
    """A camera driver that dies: with `missing_camera: black` the node keeps publishing from the
    other camera, every such pose flagged (log line, WARN diagnostics naming the camera); `ros2
    param set` refuses another value and takes `wait`, after which no pose comes without the
    camera; when it sends again, poses come again."""
    node = _localizer(bundle, ros_env, "-p", "missing_camera:=black", "-p", "camera_timeout:=0.5")
    name = "pose_regressor: /localizer"
    try:
        cameras = Cameras(peer, RAW_TOPICS)
        poses = peer.record(PoseStamped, "/localizer/pose")
        diagnostics = peer.record(DiagnosticArray, "/diagnostics")
        assert cameras.send_until(lambda: bool(poses)), node.log()
        front = cameras.publishers[0]  # rear stops

        def front_only(seconds: float) -> None:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                front.publish(cameras.make(cameras.next_stamp()))
                peer.spin_for(0.1)

        before = len(poses)
        front_only(3.0)
        assert len(poses) >= before + 10, node.log()  # 10 Hz, after 0.5 s of silence
        marker = "pose uncertain: camera rear stopped: a black image in its place (missing_camera: black)"
        assert node.wait_for_line(marker, 5.0), node.log()
        warned = [m for level, m, _ in statuses(diagnostics, name) if level == 1]
        assert any(m.startswith("camera(s) stopped: rear; localizing with black images") for m in warned), (
            warned
        )
        ok, reason = peer.set_parameter("/localizer", "missing_camera", "grey")
        assert not ok and "must be one of wait, black" in reason, reason
        assert peer.set_parameter("/localizer", "missing_camera", "wait") == (True, "")
        peer.spin_for(0.5)
        before = len(poses)
        front_only(2.0)
        assert len(poses) <= before + 1, node.log()  # at most a set already on its way
        before = len(poses)
        assert cameras.send_until(lambda: len(poses) > before), node.log()
        assert node.alive() and not node.lines("Traceback"), node.log()
    finally:
        node.stop()


def test_odom_frame_changed_at_runtime_starts_and_stops_the_tf_listener(
    bundle: ModelBundle, ros_env: dict[str, str], peer: RosPeer
) -> None:
    from tf2_msgs.msg import TFMessage

    tf_qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    tf_out = peer.record(TFMessage, "/tf", tf_qos)
    tf_pub = peer.node.create_publisher(TFMessage, "/tf", tf_qos)
    poses = peer.record(PoseStamped, "/localizer/pose")
    node = NodeProcess(
        [
            *("--bundle", str(bundle.path), "--ros-args", "-p", "mc_samples:=2"),
            *("-p", "publish_tf:=true", "-p", 'odom_frame:=""', "-p", "transform_tolerance:=0.25"),
        ],
        ros_env,
    )

    def ours(child: str) -> list[TransformStamped]:
        return _map_transforms(tf_out, child)

    def listening() -> tuple[int, int]:
        """The localizer's subscriptions on /tf and /tf_static, as the graph shows them."""

        def count(topic: str) -> int:
            infos = peer.node.get_subscriptions_info_by_topic(topic)
            return sum(1 for info in infos if info.node_name == "localizer")

        return count("/tf"), count("/tf_static")

    def localize_until(child: str, count: int, timeout: float = 20.0) -> bool:
        """Sends odom -> base_link and a camera set at each image stamp until the localizer has
        published `count` more transforms map -> `child`."""
        goal = len(ours(child)) + count
        deadline = time.monotonic() + timeout
        while len(ours(child)) < goal and time.monotonic() < deadline:
            stamp = cameras.next_stamp()
            tf_pub.publish(_odom_message(stamp))
            peer.spin_for(0.01)
            cameras.send(stamp)
            peer.spin_for(0.1)
        return len(ours(child)) >= goal

    def set_frame(value: str) -> None:
        assert peer.set_parameter(NODE, "odom_frame", value) == (True, ""), node.log()
        assert node.wait_for_line(f"parameters changed: odom_frame = {value!r}", 10.0), node.log()

    try:
        cameras = Cameras(peer, RAW_TOPICS)
        # odom_frame "": map -> base_link, and no /tf listener (nothing to look up).
        assert localize_until("base_link", 2), node.log()
        assert listening() == (0, 0)

        # "" -> "odom" at runtime: the node listens from now on and publishes map -> odom.
        set_frame("odom")
        base_links = len(ours("base_link"))
        assert localize_until("odom", 3), node.log()
        assert listening() == (1, 1)
        assert peer.spin_until(lambda: len(poses) >= len(ours("odom")), 5.0)
        by_stamp = dict(zip(pose_stamps(poses), poses, strict=True))
        for transform in ours("odom"):
            image_stamp = (
                transform.header.stamp.sec * 1_000_000_000 + transform.header.stamp.nanosec - TOLERANCE_NS
            )
            pose = by_stamp[image_stamp].pose
            p, o = pose.position, pose.orientation
            expected_t, expected_q = map_to_odom(
                np.array([p.x, p.y, p.z]), np.array([o.x, o.y, o.z, o.w]), *_odom_at(image_stamp)
            )
            tr, rot = transform.transform.translation, transform.transform.rotation
            assert [tr.x, tr.y, tr.z] == pytest.approx(list(expected_t), abs=1e-6)
            assert abs(float(np.array([rot.x, rot.y, rot.z, rot.w]) @ expected_q)) == pytest.approx(
                1.0, abs=1e-9
            )
        # at most the poses in flight when the change came were still map -> base_link
        assert len(ours("base_link")) - base_links <= 2

        # publish_tf builds the TF output at configure: refused while active, alone or in one
        # atomic set with odom_frame (then odom_frame is left as it was too).
        ok, reason = peer.set_parameter(NODE, "publish_tf", False)
        assert not ok and "may change only while the node is unconfigured" in reason
        request = SetParametersAtomically.Request(
            parameters=[
                Parameter("publish_tf", value=False).to_parameter_msg(),
                Parameter("odom_frame", value="").to_parameter_msg(),
            ]
        )
        result = peer.call(SetParametersAtomically, f"{NODE}/set_parameters_atomically", request).result
        assert not result.successful and "'publish_tf' may change only" in result.reason
        assert peer.get_parameter(NODE, "odom_frame") == "odom"
        assert peer.get_parameter(NODE, "publish_tf") is True
        assert listening() == (1, 1)

        # "odom" -> "" at runtime: map -> base_link again, and the listener is gone.
        set_frame("")
        assert peer.spin_until(lambda: listening() == (0, 0), 10.0), listening()
        odoms = len(ours("odom"))
        assert localize_until("base_link", 3), node.log()
        assert len(ours("odom")) - odoms <= 2

        # Set while inactive (configured): in force at the next activate.
        assert peer.transition(NODE, "deactivate")
        set_frame("odom")
        assert peer.spin_until(lambda: listening() == (1, 1), 10.0), listening()
        assert peer.transition(NODE, "activate")
        assert localize_until("odom", 2), node.log()

        # Unconfigured: publish_tf and odom_frame change together; configure builds what they ask.
        assert peer.transition(NODE, "deactivate") and peer.transition(NODE, "cleanup")
        assert peer.spin_until(lambda: listening() == (0, 0), 10.0), listening()
        request.parameters = [
            Parameter("publish_tf", value=False).to_parameter_msg(),
            Parameter("odom_frame", value="odom").to_parameter_msg(),
        ]
        result = peer.call(SetParametersAtomically, f"{NODE}/set_parameters_atomically", request).result
        assert result.successful, result.reason
        assert peer.transition(NODE, "configure") and peer.transition(NODE, "activate")
        sent, transforms = len(poses), len(tf_out)
        assert cameras.send_until(lambda: len(poses) >= sent + 3), node.log()
        # without publish_tf an odom_frame change at runtime is taken and needs nothing
        set_frame("")
        set_frame("odom")
        assert cameras.send_until(lambda: len(poses) >= sent + 6), node.log()
        peer.spin_for(0.5)
        assert len(tf_out) == transforms and listening() == (0, 0)
        assert not node.lines("Traceback") and not node.lines("could not apply"), node.log()
    finally:
        node.stop()
