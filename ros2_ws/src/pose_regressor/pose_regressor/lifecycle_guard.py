"""Refusing illegal lifecycle transitions instead of dying on them (rclpy Jazzy).

rclpy Jazzy's `LifecycleNode` answers a `change_state` request for a transition that the
current state does not have (configure while active, deactivate twice) by raising
`RCLError: Transition is not registered` inside the service callback, which ends the
executor and the process (ros2/rclpy#1209; fixed only in Rolling). A lifecycle manager or a
mistyped `ros2 lifecycle set` must never take the localizer down, so the service's callback
is wrapped: a transition that is not available is answered `success: false` with one log line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lifecycle_msgs.srv import ChangeState
from rclpy.lifecycle import LifecycleNode


def current_state(node: LifecycleNode) -> str:
    """The label of the node's lifecycle state (unconfigured, inactive, active, finalized...)."""
    # rclpy keeps the state machine in a protected member and offers no public getter (Jazzy).
    return str(node._state_machine.current_state[1])


def available_transitions(node: LifecycleNode) -> dict[int, str]:
    """Transition id -> label for the transitions the current state has."""
    return {int(t[0]): str(t[1]) for t in node._state_machine.available_transitions}


def guard_change_state(node: LifecycleNode, log: Callable[[str], None]) -> None:
    """Wraps the node's `~/change_state` service so that unavailable transitions are refused."""
    service = node._service_change_state
    original: Callable[[Any, Any], Any] = service.callback

    def change_state(request: ChangeState.Request, response: ChangeState.Response) -> Any:
        transitions = available_transitions(node)
        label = request.transition.label
        wanted = label or f"id {request.transition.id}"
        allowed = label in transitions.values() if label else request.transition.id in transitions
        if not allowed:
            names = ", ".join(sorted(set(transitions.values()))) or "none"
            log(
                f"refused lifecycle transition {wanted!r} in state {current_state(node)!r}: "
                f"available transitions are {names}"
            )
            response.success = False
            return response
        try:
            return original(request, response)
        except Exception as exc:  # never let a transition take the process down
            log(f"lifecycle transition {wanted!r} failed: {type(exc).__name__}: {exc}")
            response.success = False
            return response

    service.callback = change_state
