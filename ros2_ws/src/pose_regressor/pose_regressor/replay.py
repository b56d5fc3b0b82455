"""`pose-regressor replay`: publish a bag's messages over ROS 2 with their recorded timing.

The stand-in for `ros2 bag play` where rosbag2 is not installed. Messages are read with
`rosbags`, deserialized from their raw CDR by rclpy (a corrupt message is skipped and counted)
and published at their recorded pace scaled by `rate`; with `clock`, `/clock` follows the
bag's time (for `use_sim_time`). With `log`, every published message's header stamp,
publish time (CLOCK_MONOTONIC, ns) and loop offset are written as JSON lines, which
`pose-regressor eval-node` uses to measure end-to-end latency and to match looped stamps back to
the bag's ground truth. With `loop`, each pass shifts the stamps forward by the bag's length
(plus 0.1 s) so that they never go backwards. With `skip_empty_s`, a stretch of the bag with no
messages longer than that is played in that time instead (ROS 1 `rosbag play --skip-empty`): a
bag of short sequences recorded far apart replays in minutes, with its stamps unchanged.

Damaged bags: a bag whose metadata, header or index cannot be read is one `BagReadError`
(`cannot read bag X: <reason>`) before anything is published. A damaged chunk ends the pass
early and the messages it held are counted (`ReplayStats.unreadable`); a record that does not
deserialize is skipped and counted (`ReplayStats.skipped`). A bag with nothing readable is a
`BagReadError`.

Waiting: every wait (for subscribers, for the next message's time, between loops) sleeps in
slices of at most `WAIT_SLICE_S` and checks the `duration` deadline and a `StopFlag` that the
command line's SIGINT/SIGTERM handlers set, so a recording gap of hours, or a slow `rate`,
never outlives `--duration` or a signal.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

import rclpy
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from rosgraph_msgs.msg import Clock

from pose_regressor.bagio import BagReadError, ReadStats, open_bag, read_messages
from pose_regressor.limits import MAX_DURATION_S, MAX_RATE, MAX_START_DELAY_S, MIN_RATE, MIN_SKIP_EMPTY_S
from pose_regressor.messages import ns_from_time, time_from_ns
from pose_regressor.teardown import teardown_watchdog

CLOCK_PERIOD_NS = 25_000_000  # /clock at 40 Hz between messages, like ros2 bag play
LOOP_GAP_NS = 100_000_000  # bag time (and, scaled by the rate, wall time) between two loops
WAIT_SLICE_S = 0.025  # longest uninterrupted sleep: deadline and stop flag are checked this often
SUBSCRIBER_SETTLE_S = 0.5  # after all publishers matched: the reader side completing its handshake
FLUSH_S = 0.3  # after the last message: at most this for acknowledgements, then this long a linger

PROFILE_ENV = "FASTRTPS_DEFAULT_PROFILES_FILE"
LARGE_IMAGES_PROFILE = "fastdds_large_images.xml"
PACKAGE = "pose_regressor"


class ReplayError(ValueError):
    """The bag cannot be replayed as asked (missing, unknown topics or types, bad values)."""


class Interrupted(Exception):  # noqa: N818 - a request to stop, not an error
    """SIGINT or SIGTERM arrived; the work was stopped cleanly. Exit with `exit_code`."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # 130 for SIGINT, 143 for SIGTERM, as a shell reports them


class StopFlag:
    """Set from a signal handler (see `handle_signals`); long waits poll it.

    Only a plain attribute is written in the handler: a lock taken there could deadlock with
    the interrupted main thread holding it.
    """

    def __init__(self) -> None:
        self.signum: int | None = None

    def set(self, signum: int) -> None:
        if self.signum is None:
            self.signum = signum

    def is_set(self) -> bool:
        return self.signum is not None

    def check(self) -> None:
        """Raises `Interrupted` once the flag is set."""
        if self.signum is not None:
            raise Interrupted(self.signum)

    def sleep(self, seconds: float) -> bool:
        """Sleeps up to `seconds` in slices; False if the flag was set (then it returns at once)."""
        end = time.monotonic() + max(0.0, seconds)
        while self.signum is None:
            left = end - time.monotonic()
            if left <= 0:
                return True
            time.sleep(min(left, WAIT_SLICE_S))
        return False


@contextmanager
def handle_signals(stop: StopFlag) -> Iterator[StopFlag]:
    """SIGINT and SIGTERM set `stop` while the block runs (main thread only); the previous
    handlers come back afterwards. Use with rclpy's own handlers off
    (`signal_handler_options=SignalHandlerOptions.NO`): rclpy's SIGTERM handler shuts the
    context down under a running publisher."""

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def large_images_profile() -> Path | None:
    """The package's Fast DDS profile for large images (config/fastdds_large_images.xml), or None.

    Looked up in the source tree (`pip install -e`), the ament share directory (`colcon build`)
    and `<prefix>/share/pose_regressor/config` (a wheel's data files), in that order.
    """
    candidates = [Path(__file__).resolve().parents[1] / "config" / LARGE_IMAGES_PROFILE]
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory(PACKAGE)) / "config" / LARGE_IMAGES_PROFILE)
    except Exception:  # ament_index is not installed, or the package is not in an ament prefix
        pass
    candidates.append(Path(sys.prefix) / "share" / PACKAGE / "config" / LARGE_IMAGES_PROFILE)
    return next((path for path in candidates if path.is_file()), None)


def dds_environment(env: Mapping[str, str]) -> dict[str, str]:
    """`env` with FASTRTPS_DEFAULT_PROFILES_FILE set to the large-images profile unless the user
    set one: with Fast DDS defaults a 640x480 image does not fit the shared-memory segment and
    best-effort images are silently lost over UDP."""
    out = dict(env)
    if not out.get(PROFILE_ENV):
        profile = large_images_profile()
        if profile is not None:
            out[PROFILE_ENV] = str(profile)
    return out


def use_large_images_profile() -> str | None:
    """Sets the profile for this process (before `rclpy.init`); returns the profile in effect."""
    env = dds_environment(os.environ)
    if env.get(PROFILE_ENV) and not os.environ.get(PROFILE_ENV):
        os.environ[PROFILE_ENV] = env[PROFILE_ENV]
    return os.environ.get(PROFILE_ENV) or None


def check_rate(rate: float) -> float:
    if not (math.isfinite(rate) and MIN_RATE <= rate <= MAX_RATE):
        raise ReplayError(f"rate must be a speed factor from {MIN_RATE:g} to {MAX_RATE:g}, got {rate}")
    return rate


def check_duration(duration: float | None) -> float | None:
    if duration is not None and not (math.isfinite(duration) and 0 < duration <= MAX_DURATION_S):
        raise ReplayError(f"duration must be > 0 and at most {MAX_DURATION_S:g} s, got {duration}")
    return duration


def check_skip_empty(seconds: float | None) -> float | None:
    if seconds is not None and not (math.isfinite(seconds) and MIN_SKIP_EMPTY_S <= seconds <= MAX_DURATION_S):
        raise ReplayError(
            f"skip-empty must be from {MIN_SKIP_EMPTY_S:g} to {MAX_DURATION_S:g} s, got {seconds}"
        )
    return seconds


@dataclass
class ReplayStats:
    published: dict[str, int] = field(default_factory=dict)
    skipped: int = 0  # records that did not deserialize
    unreadable: int = 0  # messages the index promised that could not be read (damaged chunk)
    read_error: str | None = None  # why a pass ended early
    loops: int = 0
    seconds: float = 0.0
    stopped_by: str = "end"  # "end" of the bag, "duration", or "signal"

    def summary(self) -> dict[str, Any]:
        return {
            "published": sum(self.published.values()),
            "topics": len(self.published),
            "skipped_corrupt": self.skipped,
            "unreadable": self.unreadable,
            "read_error": self.read_error,
            "loops": self.loops,
            "seconds": round(self.seconds, 3),
            "stopped_by": self.stopped_by,
        }


def message_class(msgtype: str) -> Any:
    """The rclpy class of a ROS type name such as `sensor_msgs/msg/Image`."""
    package, _, name = msgtype.partition("/msg/")
    try:
        return getattr(importlib.import_module(f"{package}.msg"), name)
    except (ImportError, AttributeError) as exc:
        raise ReplayError(f"message type {msgtype} is not available in this ROS installation") from exc


def _wait_for_subscribers(publishers: list[Any], timeout: float, stop: StopFlag) -> None:
    """Waits until every publisher has a subscriber (or `timeout` s), so the first messages are not lost
    to DDS discovery; a topic nobody listens to just waits out the timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(p.get_subscription_count() > 0 for p in publishers):
        if not stop.sleep(0.02):
            return
    stop.sleep(SUBSCRIBER_SETTLE_S)  # matched publishers may still be completing the handshake


def _flush(publishers: list[Any], stop: StopFlag) -> None:
    """Lets the last messages reach their readers before this process's node goes: reliable readers
    acknowledge them; a best-effort reader (the localizer's sensor QoS) is not asked, so the writer
    lingers a moment. Without it the last set of a replay was now and then lost (1 of 30 or 1 of 4
    sets in eval-node runs), as the node was destroyed right after the last publish."""
    for publisher in publishers:
        publisher.wait_for_all_acked(Duration(seconds=FLUSH_S))
    stop.sleep(FLUSH_S)


class _Pacer:
    """Waits for monotonic times in slices, publishing /clock meanwhile; knows the deadline."""

    def __init__(self, clock: Callable[[int], None] | None, deadline_ns: int | None, stop: StopFlag) -> None:
        self.clock = clock
        self.deadline_ns = deadline_ns
        self.stop = stop

    def wait_until(self, due_ns: int) -> str | None:
        """None once `due_ns` is reached; "duration" or "signal" if it is not to be waited for."""
        while True:
            now = time.monotonic_ns()
            if self.clock is not None:
                self.clock(now)
            if self.stop.is_set():
                return "signal"
            if self.deadline_ns is not None and now >= self.deadline_ns:
                return "duration"
            if now >= due_ns:
                return None
            wake = due_ns if self.deadline_ns is None else min(due_ns, self.deadline_ns)
            time.sleep(min((wake - now) / 1e9, WAIT_SLICE_S))


@dataclass
class _Pass:
    """One pass over the bag: what it read and when it started (bag and monotonic time)."""

    read: ReadStats = field(default_factory=ReadStats)
    first_ns: int | None = None  # log time of the first message read
    last_ns: int = 0  # log time of the last message read
    skipped_ns: int = 0  # bag time of the empty stretches cut short so far (skip_empty)
    base_ns: int = 0  # monotonic time at which the first message was due


class _Publisher:
    """Publishes one pass of the bag at its recorded pace (see `replay`)."""

    def __init__(
        self,
        node: Node,
        classes: dict[str, Any],
        clock: bool,
        rate: float,
        stop: StopFlag,
        log: IO[str] | None,
        stats: ReplayStats,
        skip_empty_s: float | None = None,
    ) -> None:
        # Reliable like `ros2 bag play`: it matches reliable and best-effort subscribers alike;
        # 100 deep so a fast replay's burst waits in the queue instead of being dropped.
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.classes = classes
        self.publishers = {topic: node.create_publisher(cls, topic, qos) for topic, cls in classes.items()}
        self.clock_pub = node.create_publisher(Clock, "/clock", 10) if clock else None
        self.rate = rate
        self.stop = stop
        self.log = log
        self.stats = stats
        self.skip_empty_ns = None if skip_empty_s is None else round(skip_empty_s * 1e9)
        self.deadline_ns: int | None = None
        self._next_clock = 0
        self._sim: tuple[int, int, int] = (0, 0, 0)  # (first log time + offset, base, cap)

    def _tick_clock(self, now: int) -> None:
        if self.clock_pub is None or now < self._next_clock:
            return
        first, base, cap = self._sim
        sim = first + round((now - base) * self.rate)
        self.clock_pub.publish(Clock(clock=time_from_ns(min(sim, cap))))
        self._next_clock = now + CLOCK_PERIOD_NS

    def pacer(self) -> _Pacer:
        return _Pacer(self._tick_clock if self.clock_pub is not None else None, self.deadline_ns, self.stop)

    def run_pass(self, reader: Any, connections: list[Any], offset_ns: int, one: _Pass) -> str | None:
        """Publishes the bag once; None at its end, "duration" or "signal" if stopped before."""
        pacer = self.pacer()
        messages = read_messages(reader, connections, one.read)
        try:
            for connection, log_ns, raw in messages:
                if one.first_ns is None:
                    # The clock starts at the first message read, not before the reader's seek
                    # (tens of ms on each loop), which would publish the first sets in a burst.
                    one.first_ns, one.base_ns = log_ns, time.monotonic_ns()
                elif self.skip_empty_ns is not None and log_ns - one.last_ns > self.skip_empty_ns:
                    one.skipped_ns += log_ns - one.last_ns - self.skip_empty_ns
                due = one.base_ns + round((log_ns - one.first_ns - one.skipped_ns) / self.rate)
                # /clock jumps over a skipped stretch, as the stamps do.
                self._sim = (one.first_ns + offset_ns + one.skipped_ns, one.base_ns, log_ns + offset_ns)
                stopped = pacer.wait_until(due)
                if stopped is not None:
                    return stopped
                self._publish(connection.topic, raw, offset_ns)
                one.last_ns = log_ns
        finally:
            messages.close()
        return None

    def _publish(self, topic: str, raw: bytes, offset_ns: int) -> None:
        try:
            msg = deserialize_message(bytes(raw), self.classes[topic])
        except Exception:  # a corrupt record must not end the replay
            self.stats.skipped += 1
            return
        if offset_ns and hasattr(msg, "header"):
            msg.header.stamp = time_from_ns(ns_from_time(msg.header.stamp) + offset_ns)
        self.publishers[topic].publish(msg)
        self.stats.published[topic] = self.stats.published.get(topic, 0) + 1
        if self.log is not None and hasattr(msg, "header"):
            record = {
                "topic": topic,
                "stamp_ns": ns_from_time(msg.header.stamp),
                "published_ns": time.monotonic_ns(),
                "offset_ns": offset_ns,  # added to the bag's stamps in this loop
            }
            self.log.write(json.dumps(record) + "\n")


def replay(
    bag: Path,
    rate: float = 1.0,
    loop: bool = False,
    clock: bool = False,
    topics: Sequence[str] | None = None,
    duration: float | None = None,
    start_delay: float = 3.0,
    log: IO[str] | None = None,
    node: Node | None = None,
    stop: StopFlag | None = None,
    skip_empty_s: float | None = None,
) -> ReplayStats:
    """Publishes the bag (rclpy must be initialized). Returns counts; stops after `duration` s if
    given, or when `stop` is set (then `stopped_by` is "signal"); empty stretches longer than
    `skip_empty_s` (bag seconds) are cut to that length.

    Raises:
        ReplayError: a bad rate, duration or start delay, a missing bag, unknown topics or types.
        BagReadError: the bag cannot be opened, or none of its messages can be read.
    """
    check_rate(rate)
    check_duration(duration)
    check_skip_empty(skip_empty_s)
    if not (math.isfinite(start_delay) and 0 <= start_delay <= MAX_START_DELAY_S):
        raise ReplayError(f"start delay must be from 0 to {MAX_START_DELAY_S:g} s, got {start_delay}")
    if not Path(bag).exists():
        raise ReplayError(f"bag {bag} does not exist")
    stop = stop or StopFlag()
    stats = ReplayStats()
    wall_start = time.monotonic()
    reader = open_bag(bag)  # before any DDS work: a damaged bag fails at once
    own_node = node is None
    try:
        available = {c.topic: c for c in reader.connections}
        wanted = list(topics) if topics else sorted(available)
        missing = [t for t in wanted if t not in available]
        if missing:
            raise ReplayError(f"topics {missing} are not in {bag}; it has {', '.join(sorted(available))}")
        connections = [c for c in reader.connections if c.topic in set(wanted)]
        classes = {c.topic: message_class(c.msgtype) for c in connections}
        if node is None:
            node = rclpy.create_node("pose_regressor_replay")
        publisher = _Publisher(node, classes, clock, rate, stop, log, stats, skip_empty_s)
        _wait_for_subscribers(list(publisher.publishers.values()), start_delay, stop)
        if duration is not None:
            publisher.deadline_ns = time.monotonic_ns() + round(duration * 1e9)
        offset_ns = 0
        while True:
            one = _Pass()
            stopped = publisher.run_pass(reader, connections, offset_ns, one)
            stats.unreadable += one.read.unreadable
            stats.read_error = stats.read_error or one.read.error
            if stopped is None and not stats.published and (one.read.damaged or stats.skipped):
                raise BagReadError(
                    f"cannot read bag {bag}: none of its messages on {', '.join(sorted(classes))} could be "
                    f"read ({one.read.unreadable} unreadable, {stats.skipped} corrupt"
                    + (f"; {one.read.error}" if one.read.error else "")
                    + ")"
                )
            if stopped is None and loop and one.first_ns is not None:
                stats.loops += 1
                # Each loop continues the bag's time so stamps never go backwards, and starts one
                # gap later in wall time too: without the pause, the next loop's first set would
                # follow the last one at once and the node would see two sets in a burst.
                offset_ns += one.last_ns - one.first_ns + LOOP_GAP_NS
                played_ns = one.last_ns - one.first_ns - one.skipped_ns
                resume = one.base_ns + round((played_ns + LOOP_GAP_NS) / rate)
                stopped = publisher.pacer().wait_until(resume)
                if stopped is None:
                    continue
            stats.stopped_by = stopped or "end"
            if stopped != "signal":
                _flush(list(publisher.publishers.values()), stop)
            return stats
    finally:
        stats.seconds = time.monotonic() - wall_start
        reader.close()
        if own_node and node is not None:
            with teardown_watchdog():  # the participant's deletion can deadlock in Fast DDS
                node.destroy_node()
