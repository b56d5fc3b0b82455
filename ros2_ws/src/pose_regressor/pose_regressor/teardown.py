"""A bound on the time a process takes to tear ROS down once its work is done.

Deleting a DDS participant joins the middleware's threads, and Fast DDS 2.14 (Jazzy's) can
deadlock there: once in a CI run a node that had already logged its `cannot configure:` line
never exited, and once a `pose-regressor replay` stopped by SIGTERM, while two other replays
ended beside it, spun at 100% of a core for half an hour in rmw_destroy_node ->
DomainParticipant::set_listener, which waited for a discovery callback (a peer's reader going
away) that itself waited on a mutex the destroying thread held (eProsima/Fast-DDS#6513 describes
the spin). That thread holds the GIL meanwhile, so no Python code can run: the bound is
faulthandler's watchdog, a C thread.
"""

from __future__ import annotations

import faulthandler
import sys
from collections.abc import Iterator
from contextlib import contextmanager

TEARDOWN_TIMEOUT_S = 15.0


@contextmanager
def teardown_watchdog(timeout_s: float = TEARDOWN_TIMEOUT_S) -> Iterator[None]:
    """End the process with status 1 if the block has not ended after `timeout_s`.

    A process that has said why it stops (or that it is done) must not keep its launch file, a
    respawn or a script waiting: faulthandler's watchdog, which needs no GIL, prints every thread's
    stack to stderr and calls _exit(1) if the teardown hangs."""
    # the process's own stderr: a caller's replacement (pytest's capture) may have no descriptor
    stderr = sys.__stderr__
    armed = stderr is not None
    try:
        if stderr is not None:
            faulthandler.dump_traceback_later(timeout_s, exit=True, file=stderr)
    except (ValueError, OSError):  # a closed stderr: nothing to print the stacks to
        armed = False
    try:
        yield
    finally:
        if armed:
            faulthandler.cancel_dump_traceback_later()
