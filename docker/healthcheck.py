"""Container health probe for the `localizer` node: is it alive and does it say it is working?

Joins the DDS domain for a few seconds, listens on /diagnostics and exits 0 (healthy) as soon
as a DiagnosticArray carries the localizer's status at a level no worse than ``--max-level``;
exits 1 (unhealthy) with one line on stderr otherwise. The status is named
``pose_regressor: <node>``, the node's fully qualified name, e.g.
``pose_regressor: /robot1/localizer`` (published by `pose_regressor.node` at 1 Hz); the
namespace comes from ``--namespace`` or $POSE_NAMESPACE. Used by the images' HEALTHCHECK:

    /opt/pose_regressor/entrypoint.sh python3 /opt/pose_regressor/healthcheck.py [--timeout 8]

Levels are diagnostic_msgs/DiagnosticStatus levels: 0 OK, 1 WARN, 2 ERROR, 3 STALE. The default
``--max-level 1`` calls a localizer healthy while it localizes, also with a stopped camera or an
uncertain pose (WARN), and unhealthy when no camera delivers images or inference fails (ERROR).
``--max-level 3`` only asks that the node is alive. Light on purpose: one best-effort
subscription, no ros2 daemon, no log files (external ROS logging is disabled).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

NODE_NAME = "localizer"


def status_name(namespace: str) -> str:
    """The localizer's diagnostics status name in `namespace` ('' or '/' for the root)."""
    parts = [part for part in namespace.split("/") if part]
    return "pose_regressor: /" + "/".join([*parts, NODE_NAME])


LEVELS = {0: "OK", 1: "WARN", 2: "ERROR", 3: "STALE"}


def level_of(raw: bytes | int) -> int:
    """DiagnosticStatus.level is a ROS `byte`: rclpy gives a length-1 bytes object."""
    return raw[0] if isinstance(raw, bytes | bytearray) else int(raw)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--topic", default="/diagnostics", help="DiagnosticArray topic (default: /diagnostics)")
    p.add_argument(
        "--namespace",
        default=os.environ.get("POSE_NAMESPACE", ""),
        help="the localizer's namespace (default: $POSE_NAMESPACE, else the root)",
    )
    p.add_argument("--name", help="status name to match (default: 'pose_regressor: <namespace>/localizer')")
    p.add_argument("--timeout", type=float, default=8.0, help="seconds to wait for a status (default: 8)")
    p.add_argument(
        "--max-level",
        type=int,
        choices=sorted(LEVELS),
        default=1,
        help="worst level still healthy: 0 OK, 1 WARN (default), 2 ERROR, 3 STALE",
    )
    return p.parse_args(argv)


def probe(topic: str, name: str, timeout: float, max_level: int) -> tuple[bool, str]:
    """Listens on `topic` for up to `timeout` seconds; returns (healthy, one-line reason)."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data

    # argv[0] is the program name; --disable-external-lib-logs: no log file per probe under ~/.ros/log.
    context = Context()
    rclpy.init(args=["healthcheck", "--ros-args", "--disable-external-lib-logs"], context=context)
    try:
        node = rclpy.create_node(f"pose_regressor_healthcheck_{os.getpid()}", context=context)
        seen: list[tuple[int, str]] = []

        def on_array(msg: DiagnosticArray) -> None:
            seen.extend((level_of(s.level), s.message) for s in msg.status if s.name == name)

        # Best effort (the sensor-data profile) matches reliable and best-effort publishers alike.
        node.create_subscription(DiagnosticArray, topic, on_array, qos_profile_sensor_data)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
            if any(level <= max_level for level, _ in seen):
                level, message = next((lv, m) for lv, m in seen if lv <= max_level)
                return True, f"healthy: {name!r} is {LEVELS[level]}: {message}"
        if seen:
            level, message = seen[-1]
            return False, f"unhealthy: {name!r} is {LEVELS.get(level, level)}: {message}"
        return False, f"unhealthy: no {name!r} status on {topic} within {timeout:g} s"
    finally:
        context.try_shutdown()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    name = args.name or status_name(args.namespace)
    healthy, reason = probe(args.topic, name, args.timeout, args.max_level)
    print(reason, file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
