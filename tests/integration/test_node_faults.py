"""The localizer node under bad input and faults, over real Fast DDS and ONNX Runtime.

The node runs as its own process (`python -m pose_regressor.cli run`) on a small hand-built bundle
(`tests/unit/bundle_fixtures.py`: two cameras, 16x12 images, no training; accuracy does not
matter here). This process publishes to its camera topics: for each fuzz case a bad message,
then a good synchronized set, and checks after each case that the node is alive, that a pose
with the good set's stamp arrives and that the /diagnostics counters moved as expected.
One node run per transport (raw, compressed) holds all its cases; a third runs a bundle whose
graph outputs NaN. Configure-time errors are checked on `pose-regressor run`'s exit code and
stderr.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import rclpy
import rclpy.executors
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image

from pose_regressor.bundle import ModelBundle
from pose_regressor.limits import INTERRUPTED_WHILE_STARTING
from tests.integration.node_client import (
    BASE_NS,
    HEIGHT,
    PERIOD_NS,
    RAW_TOPICS,
    WIDTH,
    NodeProcess,
    compressed_image,
    compressed_message,
    raw_image,
)
from tests.integration.startup_signal import interrupt_while_importing
from tests.unit.bundle_fixtures import make_bundle, poison_initializer

pytestmark = pytest.mark.ros

COMPRESSED_TOPICS = tuple(f"{topic}/compressed" for topic in RAW_TOPICS)
RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)


# ---------------------------------------------------------------------------------- processes
class LocalizerProcess(NodeProcess):
    """`pose-regressor run --bundle BUNDLE --ros-args -p NAME:=VALUE ...` in a subprocess."""

    def __init__(self, bundle: Path, env: dict[str, str], params: dict[str, str]) -> None:
        args = ["--bundle", str(bundle), "--ros-args"]
        for name, value in params.items():
            args += ["-p", f"{name}:={value}"]
        super().__init__(args, env)


@dataclass
class Peer:
    """This test's ROS node: publishes camera messages, records poses and diagnostics."""

    topics: tuple[str, ...]
    compressed: bool
    poses: list[int] = field(default_factory=list)  # stamps (ns) of the poses received
    diagnostics: list[tuple[int, str, dict[str, str]]] = field(default_factory=list)
    stamp_ns: int = BASE_NS

    def __post_init__(self) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("fault_injector", context=self.context)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        kind = CompressedImage if self.compressed else Image
        self.publishers = [
            self.node.create_publisher(kind, topic, qos_profile_sensor_data) for topic in self.topics
        ]
        self.pose_sub = self.node.create_subscription(PoseStamped, "/localizer/pose", self._on_pose, RELIABLE)
        self.diag_sub = self.node.create_subscription(
            DiagnosticArray, "/diagnostics", self._on_diagnostics, RELIABLE
        )

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)

    def _on_pose(self, msg: PoseStamped) -> None:
        self.poses.append(msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith("pose_regressor"):
                values = {kv.key: kv.value for kv in status.values}
                self.diagnostics.append((int.from_bytes(status.level, "little"), status.message, values))

    def spin_until(self, condition: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                return False
            self.executor.spin_once(timeout_sec=0.02)
        return True

    def next_stamp(self) -> int:
        self.stamp_ns += PERIOD_NS
        return self.stamp_ns

    def publish(self, messages: list[tuple[int, Any]]) -> None:
        for camera, msg in messages:
            self.publishers[camera].publish(msg)
        self.executor.spin_once(timeout_sec=0.005)

    def good_set(self, stamp: int | None = None) -> int:
        stamp = self.next_stamp() if stamp is None else stamp
        make = compressed_image if self.compressed else raw_image
        self.publish([(camera, make(stamp)) for camera in range(len(self.topics))])
        return stamp

    def expect_pose(self, stamp: int, timeout: float = 5.0) -> bool:
        return self.spin_until(lambda: stamp in self.poses, timeout)

    def good_set_with_pose(self, timeout: float = 10.0) -> int:
        """Sends a good set, again every 0.5 s until a pose with its stamp comes back; that stamp.

        Retries cover the first sets after start-up (a best-effort reader drops samples from a
        writer it has not matched yet); later, the first set's pose comes back in milliseconds.
        """
        deadline = time.monotonic() + timeout
        sent = []
        while time.monotonic() < deadline:
            sent.append(self.good_set())
            if self.spin_until(lambda: any(stamp in self.poses for stamp in sent), 0.5):
                return next(stamp for stamp in reversed(sent) if stamp in self.poses)
        raise AssertionError(f"no pose for {len(sent)} good sets; poses so far: {self.poses[-5:]}")

    def counters(self, timeout: float = 5.0) -> dict[str, str]:
        """Values of the first diagnostics message that counts every pose received so far."""
        received = len(self.poses)
        start = len(self.diagnostics)

        def ready() -> bool:
            return any(int(v["published"]) >= received for _, _, v in self.diagnostics[start:])

        assert self.spin_until(ready, timeout), f"no diagnostics with published >= {received}"
        return next(v for _, _, v in self.diagnostics[start:] if int(v["published"]) >= received)

    def wait_for_node(self, timeout: float = 30.0) -> None:
        def matched() -> bool:
            return (
                all(p.get_subscription_count() > 0 for p in self.publishers)
                and self.pose_sub.get_publisher_count() > 0
                and self.diag_sub.get_publisher_count() > 0
            )

        assert self.spin_until(matched, timeout), "the localizer never showed up on DDS"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> ModelBundle:
    return make_bundle(tmp_path_factory.mktemp("faults") / "bundle")


@pytest.fixture
def run_node(ros_env: dict[str, str]) -> Iterator[Callable[..., tuple[LocalizerProcess, Peer]]]:
    started: list[tuple[LocalizerProcess, Peer]] = []

    def start(bundle: Path, compressed: bool = False, **params: str) -> tuple[LocalizerProcess, Peer]:
        topics = COMPRESSED_TOPICS if compressed else RAW_TOPICS
        params = {"mc_samples": "2", "camera_topics": f"[{','.join(topics)}]", **params}
        localizer = LocalizerProcess(bundle, ros_env, params)
        peer = Peer(topics, compressed)
        started.append((localizer, peer))
        peer.wait_for_node()
        return localizer, peer

    yield start
    for localizer, peer in started:
        peer.close()
        localizer.stop()


# ---------------------------------------------------------------------------------- fuzz cases
@dataclass(frozen=True)
class Case:
    name: str
    messages: Callable[[int], list[tuple[int, Any]]]  # stamp -> (camera index, message) to send
    rejected: int  # how much rejected_images grows
    published: bool = False  # the case's own messages make a set whose pose must come back
    # What the node's new warning says; "": no new warning; None: not checked (a problem of the
    # kind logged a moment ago: throttled, unless the report interval happens to have passed).
    log: str | None = ""


RAW_CASES = [
    Case(
        "unknown encoding",
        lambda s: [(0, raw_image(s, encoding="rgb42"))],
        1,
        log="unsupported image encoding",
    ),
    Case(
        "data shorter than step x height",
        lambda s: [(1, raw_image(s, data=bytes(3 * WIDTH * HEIGHT - 1)))],
        1,
        log="expected at least step * height",
    ),
    # Longer data is accepted, the trailing bytes ignored (as cv_bridge does: it reads step x height).
    Case(
        "data longer than step x height",
        lambda s: [(k, raw_image(s, data=bytes(3 * WIDTH * HEIGHT + 100))) for k in (0, 1)],
        0,
        published=True,
    ),
    Case("width 0", lambda s: [(0, raw_image(s, width=0, data=b""))], 1, log="width must be in 1..16384"),
    Case("height 0", lambda s: [(1, raw_image(s, height=0, data=b""))], 1, log="height must be in 1..16384"),
    Case(
        "huge width",
        lambda s: [(1, raw_image(s, width=100_000, data=bytes(1000)))],  # camera 1: on 0, throttled
        1,
        log="got 100000",
    ),
    Case(
        "huge height",
        lambda s: [(0, raw_image(s, height=100_000, data=bytes(1000)))],
        1,
        log="got 100000",
    ),
    Case(
        "step smaller than a row",
        lambda s: [(0, raw_image(s, step=3 * WIDTH - 1))],
        1,
        log="smaller than one row",
    ),
    Case(
        "wrong image size, resize_mismatched false",
        lambda s: [(k, raw_image(s, width=2 * WIDTH, height=2 * HEIGHT)) for k in (0, 1)],
        2,
        log="the bundle expects 16x12; dropped",
    ),
    Case("zero stamp", lambda s: [(1, raw_image(0))], 1, log="without a stamp"),
]

COMPRESSED_CASES = [
    Case("corrupt JPEG (truncated)", lambda s: [(0, _truncated(s, "jpg"))], 1, log="corrupt or truncated"),
    Case(
        "corrupt JPEG (garbage after SOI)",
        lambda s: [(1, compressed_message(s, "jpeg", b"\xff\xd8\xff\xe0" + bytes(range(200))))],
        1,
        log="corrupt or truncated",
    ),
    # The same kind of problem as the JPEG cases on the same cameras: counted, its warning throttled.
    Case("corrupt PNG (truncated)", lambda s: [(0, _truncated(s, "png"))], 1, log=None),
    Case(
        "corrupt PNG (garbage after signature)",
        lambda s: [(1, compressed_message(s, "png", b"\x89PNG\r\n\x1a\n" + bytes(range(100))))],
        1,
        log=None,
    ),
    Case("empty data", lambda s: [(0, compressed_message(s, "png", b""))], 1, log="data is empty"),
    Case(
        "compressedDepth format",
        lambda s: [(1, compressed_message(s, "16UC1; compressedDepth", b"\x00" * 12))],
        1,
        log="compressedDepth images are not supported",
    ),
    Case(
        "wrong image size (JPEG), resize_mismatched true",
        lambda s: [(k, compressed_image(s, 2 * WIDTH, 2 * HEIGHT, "jpg")) for k in (0, 1)],
        0,
        published=True,
        log="resizing them (resize_mismatched: true)",
    ),
    Case("zero stamp", lambda s: [(0, compressed_image(0))], 1, log="without a stamp"),
]


def _truncated(stamp: int, codec: str) -> CompressedImage:
    whole = compressed_image(stamp, codec=codec)
    return compressed_message(stamp, codec, bytes(whole.data[: len(whole.data) // 2]))


def _run_cases(localizer: LocalizerProcess, peer: Peer, cases: list[Case]) -> None:
    peer.good_set_with_pose()  # the whole loop works before the first case
    before = peer.counters()
    for case in cases:
        warnings = len(localizer.lines("[WARN]"))
        stamp = peer.next_stamp()
        peer.publish(case.messages(stamp))
        if case.published:
            assert peer.expect_pose(stamp), f"{case.name}: no pose for the set stamped {stamp}"
        good = peer.good_set_with_pose()
        assert localizer.alive(), f"{case.name}: the node died\n" + "\n".join(localizer.lines())
        after = peer.counters()
        rejected = int(after["rejected_images"]) - int(before["rejected_images"])
        assert rejected == case.rejected, f"{case.name}: rejected_images grew by {rejected}"
        assert after["engine_errors"] == "0" and after["nonfinite_outputs"] == "0", case.name
        assert good in peer.poses and (not case.published or stamp in peer.poses), case.name
        new_warnings = localizer.lines("[WARN]")[warnings:]
        if case.log:
            assert any(case.log in line for line in new_warnings), f"{case.name}: {new_warnings}"
        elif case.log == "":
            assert not new_warnings, f"{case.name}: {new_warnings}"
        before = after


def _one_camera_stops_and_returns(peer: Peer) -> None:
    """The rear camera goes silent while the front one goes on: no sets, diagnostics WARN naming
    it; when it returns, its first frame pairs with the front's frame of the same stamp, never
    with a stale one, and diagnostics go back to OK."""
    peer.good_set_with_pose()
    poses = len(peer.poses)
    diagnostics = len(peer.diagnostics)
    front_only = []

    def warned() -> bool:
        return any(level == 1 and "rear" in msg for level, msg, _ in peer.diagnostics[diagnostics:])

    deadline = time.monotonic() + 5.0
    while not warned() and time.monotonic() < deadline:
        front_only.append(peer.next_stamp())
        peer.publish([(0, raw_image(front_only[-1]))])
        peer.spin_until(lambda: False, 0.05)
    assert warned(), peer.diagnostics[diagnostics:]
    assert len(peer.poses) == poses, "a pose without the rear camera"
    back = peer.next_stamp()  # rear first: it must not pair with the waiting, older front frame
    peer.publish([(1, raw_image(back)), (0, raw_image(back))])
    assert peer.expect_pose(back), "no pose once the rear camera is back"
    diagnostics = len(peer.diagnostics)

    def recovered() -> bool:
        return any(level == 0 for level, _, _ in peer.diagnostics[diagnostics:])

    deadline = time.monotonic() + 5.0
    while not recovered() and time.monotonic() < deadline:
        peer.good_set()
        peer.spin_until(lambda: False, 0.05)
    assert recovered(), peer.diagnostics[diagnostics:]
    assert not set(front_only) & set(peer.poses), "a stale front frame was used"
    assert back in peer.poses


def test_raw_fuzz_cases_flood_and_services(bundle: ModelBundle, run_node: Callable[..., Any]) -> None:
    localizer, peer = run_node(bundle.path, resize_mismatched="false", camera_timeout="0.5")
    _one_camera_stops_and_returns(peer)
    _run_cases(localizer, peer, RAW_CASES)

    # Stamps going backwards (a bag loop, a sim-time reset): the synchronizer starts over, the
    # earlier set is published as the first of a new epoch, and later sets keep coming.
    before = peer.counters()
    back = peer.stamp_ns - 10_000_000_000
    peer.good_set(back)
    assert peer.expect_pose(back), "no pose for the set stamped back in time"
    peer.good_set_with_pose()
    after = peer.counters()
    assert int(after["sync_resets"]) == int(before["sync_resets"]) + 1
    assert after["rejected_images"] == before["rejected_images"]
    assert localizer.alive()

    # Log flood: 200 bad messages in a burst (two kinds of problem on each of two cameras, the
    # encoding name varying) give a few warning lines at most; all that reach the node are counted.
    warnings_before = len(localizer.lines("[WARN]"))
    for k in range(200):
        stamp = peer.next_stamp()
        msg = raw_image(stamp, encoding=f"rgb{k}x") if k % 4 < 2 else raw_image(stamp, data=b"\x00")
        peer.publish([(k % 2, msg)])
        time.sleep(0.001)
    peer.good_set_with_pose()
    flood = peer.counters()
    assert localizer.alive()
    time.sleep(0.3)  # the node's last lines reach its stderr
    # the image problems only: the throttled "pose uncertain" report of the good sets may fall in too
    flood_warnings = [w for w in localizer.lines("[WARN]")[warnings_before:] if "]: camera " in w]
    counted = int(flood["rejected_images"]) - int(after["rejected_images"])
    assert counted >= 50, f"only {counted} of 200 bad messages reached the node"
    # At most one line per camera and kind of problem within the report interval.
    assert 1 <= len(flood_warnings) <= 4, "\n".join(flood_warnings)

    # Security: the node offers only ROS's standard parameter, lifecycle and type-description
    # services; none of them writes files.
    def services() -> list[tuple[str, list[str]]]:
        return peer.node.get_service_names_and_types_by_node("localizer", "/")

    assert peer.spin_until(lambda: len(services()) >= 12, 10.0), services()
    standard = {"rcl_interfaces", "lifecycle_msgs", "type_description_interfaces"}
    found = services()
    assert {types[0].split("/")[0] for _, types in found} <= standard, found
    assert {name.rsplit("/", 1)[-1] for name, _ in found} == {
        *("describe_parameters", "get_parameter_types", "get_parameters", "list_parameters"),
        *("set_parameters", "set_parameters_atomically", "get_type_description"),
        *("change_state", "get_state", "get_available_states", "get_available_transitions"),
        "get_transition_graph",
    }, found
    assert localizer.alive()
    assert not localizer.lines("Traceback"), "\n".join(localizer.lines())


def test_compressed_fuzz_cases(bundle: ModelBundle, run_node: Callable[..., Any]) -> None:
    localizer, peer = run_node(bundle.path, compressed=True)
    _run_cases(localizer, peer, COMPRESSED_CASES)
    assert localizer.alive()
    # OpenCV's own warnings about the corrupt images are silenced: the node's throttled lines only.
    assert not localizer.lines("grfmt_"), "\n".join(localizer.lines())
    assert not localizer.lines("Traceback"), "\n".join(localizer.lines())


def test_non_finite_engine_output_publishes_nothing_and_reports_error(
    tmp_path: Path, run_node: Callable[..., Any]
) -> None:
    nan_bundle = make_bundle(tmp_path / "nan_bundle")
    poison_initializer(nan_bundle, "W_T", float("nan"))  # translation = mask @ NaN + mean: NaN
    localizer, peer = run_node(nan_bundle.path, camera_timeout="30.0")

    def errored() -> bool:
        return any(level == 2 and int(v["nonfinite_outputs"]) >= 3 for level, _, v in peer.diagnostics)

    deadline = time.monotonic() + 15.0
    while not errored() and time.monotonic() < deadline:  # sets at 10 Hz until the node reports
        peer.good_set()
        peer.spin_until(lambda: False, 0.1)
    assert errored(), peer.diagnostics[-3:]
    statuses = peer.diagnostics
    _, message, values = next(s for s in statuses if s[0] == 2 and int(s[2]["nonfinite_outputs"]) >= 3)
    assert "non-finite" in message and "NaN" in message, message
    assert values["published"] == "0" and values["engine_errors"] == "0"
    assert not peer.poses, "a pose was published for non-finite engine output"
    assert localizer.alive()
    # Reported once with its context (the set's stamp), not once per set.
    errors = localizer.lines("[ERROR]")
    assert 1 <= len(errors) <= 2, "\n".join(errors)
    assert "inference failed for the set stamped 1700000000" in errors[0] and "EngineOutputError" in errors[0]


# ---------------------------------------------------------------------------- configure time
def _truncate(root: Path) -> None:
    onnx_path = root / "model.onnx"
    onnx_path.write_bytes(onnx_path.read_bytes()[:100])


def _truncate_unrecorded(root: Path) -> None:
    data = yaml.safe_load((root / "bundle.yaml").read_text())
    data["onnx"].pop("bytes")
    (root / "bundle.yaml").write_text(yaml.safe_dump(data))
    _truncate(root)


def _edit_yaml(**changes: Any) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        data = yaml.safe_load((root / "bundle.yaml").read_text())
        for key, value in changes.items():
            section, _, leaf = key.partition("__")
            if leaf:
                data[section][leaf] = value
            else:
                data[key] = value
        (root / "bundle.yaml").write_text(yaml.safe_dump(data))

    return edit


CONFIG_ERRORS: dict[str, tuple[Callable[[Path], None] | None, list[str], str]] = {
    "missing bundle": (
        None,
        ["--bundle", "{root}/nowhere"],
        r"parameter 'bundle': \S+/nowhere does not exist",
    ),
    "bundle is a file": (None, ["--bundle", "{root}/model.onnx"], r"model.onnx is not a directory"),
    "truncated model.onnx": (_truncate, [], r"model.onnx has 100 bytes, bundle.yaml records \d+: truncated"),
    "truncated model.onnx, size not recorded": (
        _truncate_unrecorded,
        [],
        r"cannot load the auto engine for \S+: .*(ONNX Runtime cannot load|Protobuf|INVALID)",
    ),
    "other schema version": (
        _edit_yaml(schema_version=2),
        [],
        r"bundle schema version 2 is not supported \(this pose_regressor reads version 1\)",
    ),
    "model file outside the bundle": (
        _edit_yaml(onnx__file="../../etc/passwd"),
        [],
        r"onnx.file '../../etc/passwd' points outside the bundle directory",
    ),
    "camera count differs from camera_topics": (
        None,
        ["--camera-topics", "/a/image_raw", "/b/image_raw", "/c/image_raw"],
        r"camera_topics has 3 topic\(s\) but the bundle expects 2 camera\(s\) in this order: front, rear",
    ),
    "no image transport": (
        None,
        ["--ros-args", "-p", "image_transport:=[]"],
        r"parameter 'image_transport' must name at least one transport",
    ),
    "bundle of an unknown user": (
        None,
        ["--bundle", "~nosuchuser_pr/b"],
        r"parameter 'bundle': cannot expand '~nosuchuser_pr/b': no such user",
    ),
    "deeply nested bundle.yaml": (
        lambda root: (root / "bundle.yaml").write_text("a: " + "[" * 5000 + "]" * 5000 + "\n"),
        [],
        r"bundle.yaml is nested too deeply \(at most 10 levels\)",
    ),
    "params file that is not YAML": (
        lambda root: (root / "params.yaml").write_text("/**:\n  ros__parameters:\n    a: [\n"),
        ["--params", "{root}/params.yaml"],
        r"the params file \S+/params.yaml is not valid YAML",
    ),
    "params file with a YAML alias": (
        lambda root: (root / "params.yaml").write_text(
            "/**:\n  ros__parameters:\n    map_frame: &m map\n    base_frame: *m\n"
        ),
        ["--params", "{root}/params.yaml"],
        r"the params file \S+/params.yaml uses YAML aliases",
    ),
    "params file that is not a mapping": (
        lambda root: (root / "params.yaml").write_text("just a string\n"),
        ["--params", "{root}/params.yaml"],
        r"must map node names \(e.g. '/\*\*:'\) to ros__parameters, got 'just a string'",
    ),
    "parameter of the wrong type": (
        None,
        ["--ros-args", "-p", "mc_samples:=many"],
        r"parameter 'mc_samples' to 'many' of type 'STRING', expecting type 'INTEGER'",
    ),
}


TEARDOWN_SCRIPT = """
import sys, time
import rclpy
from pose_regressor.node import _tear_down
from pose_regressor.teardown import teardown_watchdog

class StandIn:  # the node's teardown surface; destroy_node stands for a DDS participant deletion
    pipeline = None
    def destroy_node(self):
        time.sleep(float(sys.argv[1]))

rclpy.init()
with teardown_watchdog(1.0):
    _tear_down(StandIn(), None)
time.sleep(2.0)  # past the watchdog's deadline: a teardown that ended must have disarmed it
print("exited normally")
"""


def test_a_teardown_that_hangs_ends_the_process_with_status_1(ros_env: dict[str, str]) -> None:
    """The node's teardown watchdog: a hang in it (once, a DDS participant deletion in CI) ends the
    process after the timeout with status 1 and the stacks on stderr; a teardown that ends in time
    disarms it."""

    def teardown(hang_s: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-c", TEARDOWN_SCRIPT, hang_s]
        return subprocess.run(command, env=ros_env, capture_output=True, text=True, timeout=60)

    stuck = teardown("600")
    assert stuck.returncode == 1, stuck.stderr
    assert "Timeout (0:00:01)!" in stuck.stderr and "in destroy_node" in stuck.stderr, stuck.stderr
    assert "exited normally" not in stuck.stdout
    quick = teardown("0")
    assert quick.returncode == 0, quick.stderr
    assert quick.stdout.strip() == "exited normally" and quick.stderr == ""


def test_a_sigint_while_the_node_starts_is_one_line_and_exit_0(
    tmp_path: Path, ros_env: dict[str, str]
) -> None:
    """Launch's SIGINT (or a Ctrl-C) while `localizer` imports numpy, rclpy and scipy (~0.5 s)
    printed a 20-30 line traceback, or `ImportError: initialization failed ... The C extension ...
    isn't present on the system` when it landed in rclpy's C extension. The console script
    (console.py) and the node's main now end it with one line, exit 0 as after any signal. The
    signal goes out once numpy, then rclpy, has been imported (`interrupt_while_importing`)."""
    argv = [Path(sys.executable).parent / "localizer", "--ros-args", "-p", "bundle:=/nonexistent"]
    for after in ("numpy", "rclpy"):
        status, lines = interrupt_while_importing(argv, ros_env, after)
        assert (status, lines) == (0, [INTERRUPTED_WHILE_STARTING]), after
    # during configure, while the engine's onnxruntime imports: a signal there made the import fail
    # in its C extension ("ImportError: initialization failed"), logged as "cannot configure: cannot
    # load the auto engine", then rcl's "context is invalid" traceback, exit 1
    bundle = make_bundle(tmp_path / "bundle").path
    argv = [Path(sys.executable).parent / "localizer", "--ros-args", "-p", f"bundle:={bundle}"]
    status, lines = interrupt_while_importing(argv, ros_env, "onnxruntime.capi._ld_preload")
    assert (status, lines) == (0, [INTERRUPTED_WHILE_STARTING])


def test_configure_errors_exit_1_with_one_clear_line(tmp_path: Path, ros_env: dict[str, str]) -> None:
    import re

    runs = {}
    for k, (name, (damage, args, _)) in enumerate(CONFIG_ERRORS.items()):
        root = make_bundle(tmp_path / f"bundle{k}").path
        if damage is not None:
            damage(root)
        argv = [a.format(root=root) for a in args]
        if "--bundle" not in argv:
            argv = ["--bundle", str(root), *argv]
        runs[name] = subprocess.Popen(
            [sys.executable, "-m", "pose_regressor.cli", "run", *argv],
            env=ros_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    for name, process in runs.items():
        _, err = process.communicate(timeout=60)
        pattern = CONFIG_ERRORS[name][2]
        assert process.returncode == 1, f"{name}: exit code {process.returncode}\n{err}"
        assert "Traceback" not in err, f"{name}:\n{err}"
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1, f"{name}: expected one line on stderr, got\n{err}"
        assert lines[0].startswith("[ERROR]") and "[localizer]: cannot configure: " in lines[0], lines[0]
        assert re.search(pattern, lines[0]), f"{name}: {lines[0]!r} does not match {pattern!r}"
