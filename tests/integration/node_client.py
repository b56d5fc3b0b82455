"""A test-side ROS peer for the localizer's integration tests: calls its lifecycle and parameter
services, publishes camera messages and records whatever it publishes (own rclpy context)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import rclpy
import rclpy.executors
from builtin_interfaces.msg import Time
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.srv import GetParameters, SetParameters
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image

from tests.unit.bundle_fixtures import CAMERA_SIZE, CAMERAS

RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
WIDTH, HEIGHT = CAMERA_SIZE
RAW_TOPICS = tuple(f"/{name}/image_raw" for name in CAMERAS)
BASE_NS = 1_700_000_000 * 1_000_000_000
PERIOD_NS = 50_000_000
TRANSITIONS = {
    "configure": Transition.TRANSITION_CONFIGURE,
    "cleanup": Transition.TRANSITION_CLEANUP,
    "activate": Transition.TRANSITION_ACTIVATE,
    "deactivate": Transition.TRANSITION_DEACTIVATE,
    "shutdown": Transition.TRANSITION_UNCONFIGURED_SHUTDOWN,
}


class NodeProcess:
    """`python -m pose_regressor.cli run ARGS` in a subprocess; its stderr (the ROS log) is kept."""

    def __init__(self, args: Sequence[str], env: dict[str, str]) -> None:
        command = [sys.executable, "-m", "pose_regressor.cli", "run", *args]
        self.process = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._lock:
                self._lines.append(line.rstrip("\n"))

    def lines(self, marker: str = "") -> list[str]:
        with self._lock:
            return [line for line in self._lines if marker in line]

    def log(self) -> str:
        return "\n".join(self.lines())

    def alive(self) -> bool:
        return self.process.poll() is None

    def proc_stats(self) -> dict[str, int]:
        """Threads, open file descriptors and RSS (kB) of the node process, from /proc."""
        pid = self.process.pid
        status = Path(f"/proc/{pid}/status").read_text()
        rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
        return {
            "threads": len(list(Path(f"/proc/{pid}/task").iterdir())),
            "fds": len(list(Path(f"/proc/{pid}/fd").iterdir())),
            "rss_kb": rss,
        }

    def wait_for_lines(self, marker: str, count: int, timeout: float) -> list[str]:
        """The lines with `marker` once there are `count` of them (or all there are at `timeout`):
        a service reply can overtake the log line on its way through the stderr pipe."""
        deadline = time.monotonic() + timeout
        while len(self.lines(marker)) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.lines(marker)

    def wait_for_line(self, marker: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.lines(marker):
                return True
            time.sleep(0.05)
        return False

    def stop(self) -> int:
        if self.alive():
            self.process.terminate()
        try:
            code = self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(timeout=5)
        self._reader.join(timeout=5)
        return code


class RosPeer:
    """One rclpy node in its own context, spun on demand from the test thread."""

    def __init__(self, name: str = "test_peer") -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.received: dict[str, list[Any]] = {}
        self._clients: dict[str, Any] = {}

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)

    def spin_until(self, condition: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                return False
            self.executor.spin_once(timeout_sec=0.02)
        return True

    def spin_for(self, seconds: float) -> None:
        self.spin_until(lambda: False, seconds)

    def record(self, msg_type: Any, topic: str, qos: QoSProfile = RELIABLE) -> list[Any]:
        """Keeps every message on `topic` in `self.received[topic]` (also returned)."""
        messages = self.received.setdefault(topic, [])
        self.node.create_subscription(msg_type, topic, messages.append, qos)
        return messages

    def call(self, srv_type: Any, name: str, request: Any, timeout: float = 10.0) -> Any:
        client = self._clients.get(name)
        if client is None:  # kept: discovering a new client takes a while
            client = self._clients[name] = self.node.create_client(srv_type, name)
        if not self.spin_until(client.service_is_ready, timeout):
            raise AssertionError(f"service {name} never appeared")
        future = client.call_async(request)
        if not self.spin_until(future.done, timeout):
            raise AssertionError(f"service {name} did not answer within {timeout} s")
        return future.result()

    def transition(self, node: str, name: str) -> bool:
        request = ChangeState.Request()
        request.transition.id = TRANSITIONS[name]
        return bool(self.call(ChangeState, f"{node}/change_state", request).success)

    def transition_by_label(self, node: str, label: str) -> bool:
        request = ChangeState.Request()
        request.transition.label = label
        return bool(self.call(ChangeState, f"{node}/change_state", request).success)

    def state(self, node: str) -> str:
        return str(self.call(GetState, f"{node}/get_state", GetState.Request()).current_state.label)

    def set_parameter(self, node: str, name: str, value: Any) -> tuple[bool, str]:
        request = SetParameters.Request()
        message: ParameterMsg = Parameter(name, value=value).to_parameter_msg()
        request.parameters = [message]
        result = self.call(SetParameters, f"{node}/set_parameters", request).results[0]
        return bool(result.successful), str(result.reason)

    def get_parameter(self, node: str, name: str) -> Any:
        """The parameter's value as stored, in its ROS type (an int stays an int)."""
        request = GetParameters.Request(names=[name])
        value = self.call(GetParameters, f"{node}/get_parameters", request).values[0]
        return Parameter.from_parameter_msg(ParameterMsg(name=name, value=value)).value


def _time(stamp_ns: int) -> Time:
    return Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)


def _pixels(width: int, height: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def raw_image(
    stamp: int,
    width: int = WIDTH,
    height: int = HEIGHT,
    encoding: str = "rgb8",
    step: int | None = None,
    data: bytes | None = None,
) -> Image:
    msg = Image()
    msg.header.stamp = _time(stamp)
    msg.header.frame_id = "camera_optical_frame"
    msg.width, msg.height, msg.encoding = width, height, encoding
    msg.step = 3 * width if step is None else step
    msg.data = _pixels(max(width, 1), max(height, 1), stamp % 1000).tobytes() if data is None else data
    return msg


def compressed_image(
    stamp: int, width: int = WIDTH, height: int = HEIGHT, codec: str = "png"
) -> CompressedImage:
    ok, encoded = cv2.imencode(f".{codec}", _pixels(width, height, stamp % 1000))
    assert ok
    return compressed_message(stamp, codec, encoded.tobytes())


def compressed_message(stamp: int, codec: str, data: bytes) -> CompressedImage:
    msg = CompressedImage()
    msg.header.stamp = _time(stamp)
    msg.format = codec
    msg.data = data
    return msg


class Cameras:
    """Publishes synchronized sets on camera topics (raw or compressed) from a `RosPeer`."""

    def __init__(
        self, peer: RosPeer, topics: Sequence[str], compressed: bool = False, start_ns: int = BASE_NS
    ) -> None:
        self.peer = peer
        kind = CompressedImage if compressed else Image
        self.make = compressed_image if compressed else raw_image
        self.publishers = [peer.node.create_publisher(kind, t, qos_profile_sensor_data) for t in topics]
        self.stamp_ns = start_ns

    def next_stamp(self) -> int:
        self.stamp_ns += PERIOD_NS
        return self.stamp_ns

    def send(self, stamp: int | None = None, offsets_ns: Sequence[int] = ()) -> int:
        """One set stamped `stamp` (default: the next), camera k's stamp moved by offsets_ns[k]."""
        stamp = self.next_stamp() if stamp is None else stamp
        for k, publisher in enumerate(self.publishers):
            offset = offsets_ns[k] if k < len(offsets_ns) else 0
            publisher.publish(self.make(stamp + offset))
        self.peer.executor.spin_once(timeout_sec=0.005)
        return stamp

    def send_until(self, condition: Callable[[], bool], timeout: float = 15.0, period: float = 0.1) -> bool:
        """Sends sets every `period` s until `condition` holds (retries cover DDS discovery)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.send()
            if self.peer.spin_until(condition, period):
                return True
        return False

    def subscribers(self) -> list[int]:
        return [p.get_subscription_count() for p in self.publishers]


def pose_stamps(messages: Sequence[Any]) -> list[int]:
    return [m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec for m in messages]


def statuses(messages: Sequence[Any], name: str) -> list[tuple[int, str, dict[str, str]]]:
    """(level, message, values) of every diagnostics status called `name`, in arrival order."""
    found = []
    for array in messages:
        for status in array.status:
            if status.name == name:
                level = int.from_bytes(status.level, "little")
                found.append((level, status.message, {kv.key: kv.value for kv in status.values}))
    return found
