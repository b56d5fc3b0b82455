"""The `localizer` console script (`ros2 run pose_regressor localizer`, what launch files start),
and `pose-regressor`'s.

The node's `main` ends a Ctrl-C (or launch's SIGINT on shutdown) quietly, but only once its
module has loaded: numpy, rclpy and scipy take ~0.5 s to import, and a SIGINT then printed a
Python traceback of 20-30 lines. Landing inside rclpy's C extension it printed `ImportError:
initialization failed ... The C extension ... isn't present on the system`, which sends a user off
to reinstall ROS. This module imports nothing of ours but the light `limits` before it can catch either.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

from pose_regressor.limits import INTERRUPTED_WHILE_STARTING


def localizer() -> int:
    interrupted = False

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        nonlocal interrupted
        interrupted = True
        raise KeyboardInterrupt

    # Only where Python's own handler is in place: a SIGINT ignored by the parent (a background
    # job of a script) stays ignored.
    ours = signal.getsignal(signal.SIGINT) is signal.default_int_handler
    if ours:
        signal.signal(signal.SIGINT, on_sigint)
    try:
        from pose_regressor.node import main
    except (KeyboardInterrupt, ImportError):
        if not interrupted:
            raise
        print(INTERRUPTED_WHILE_STARTING, file=sys.stderr)
        return 0  # as the node's main after a signal: launch reports a clean exit
    finally:
        if ours:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    if interrupted:
        # importlib swallows a KeyboardInterrupt raised in one of its own callbacks ("Exception
        # ignored in ... _get_module_lock"): the import ended, the signal did not end the node
        print(INTERRUPTED_WHILE_STARTING, file=sys.stderr)
        return 0
    return main()


def pose_regressor() -> int:
    """The `pose-regressor` console script: a Ctrl-C while its command line imports (~20 ms) is
    one line and exit 130 too, as `cli.main` answers one after."""
    try:
        from pose_regressor.cli import main
    except KeyboardInterrupt:
        print("pose-regressor: interrupted (SIGINT)", file=sys.stderr)
        return 130
    return main()
