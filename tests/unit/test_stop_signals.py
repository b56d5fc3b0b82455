"""Ctrl-C and SIGTERM held back while a worker pool forks, then delivered to the handlers before;
remembered where Python would drop their KeyboardInterrupt."""

from __future__ import annotations

import gc
import os
import signal
import sys
import weakref

import pytest

from pose_regressor_training.stop_signals import (
    leave_stop_signals_to_parent,
    sigterm_as_interrupt,
    stop_signals_deferred,
    stop_signals_remembered,
)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_in_the_block_reaches_the_previous_handler_once_the_block_is_done(
    signum: signal.Signals,
) -> None:
    seen: list[str] = []

    def handler(number: int, _frame: object) -> None:
        seen.append(f"handled {number}")

    previous = signal.signal(signum, handler)
    try:
        with stop_signals_deferred():
            os.kill(os.getpid(), signum)
            seen.append("block went on")
        assert seen == ["block went on", f"handled {int(signum)}"]
        assert signal.getsignal(signum) is handler  # back as it was
    finally:
        signal.signal(signum, previous)


def test_ctrl_c_in_the_block_is_a_keyboard_interrupt_after_it() -> None:
    done = []
    with pytest.raises(KeyboardInterrupt), stop_signals_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        done.append(True)
    assert done == [True]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_workers_ignore_ctrl_c_and_die_on_sigterm() -> None:
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        leave_stop_signals_to_parent()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGINT, before[0])
        signal.signal(signal.SIGTERM, before[1])


class _Collectable:
    pass


@pytest.fixture
def unraisable(monkeypatch: pytest.MonkeyPatch) -> list[type[BaseException]]:
    """What reaches sys.unraisablehook (by default, the "Exception ignored in ..." lines)."""
    seen: list[type[BaseException]] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda args: seen.append(args.exc_type))
    return seen


def _signal_inside_a_weakref_callback(signum: int) -> None:
    """Where Python drops an exception: a signal handled while a weakref callback runs (as in a
    DataLoader's worker teardown) raises its KeyboardInterrupt there."""
    thing = _Collectable()
    keep = weakref.ref(thing, lambda _ref: os.kill(os.getpid(), signum))
    del thing
    gc.collect()
    assert keep() is None


def test_without_remembering_a_ctrl_c_in_a_weakref_callback_is_printed_and_lost(
    unraisable: list[type[BaseException]],
) -> None:
    """What the fix below is for: Python itself loses the interrupt."""
    _signal_inside_a_weakref_callback(signal.SIGINT)  # no KeyboardInterrupt reaches this test
    assert unraisable == [KeyboardInterrupt]


def test_a_ctrl_c_lost_in_a_weakref_callback_is_raised_at_the_next_check_and_not_printed(
    unraisable: list[type[BaseException]],
) -> None:
    with stop_signals_remembered() as stops:
        stops.raise_if_any()  # nothing received yet
        _signal_inside_a_weakref_callback(signal.SIGINT)
        assert stops.received == [signal.SIGINT]
        with pytest.raises(KeyboardInterrupt):
            stops.raise_if_any()
    assert unraisable == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_ctrl_c_elsewhere_interrupts_at_once_through_the_handler_before() -> None:
    reached = []
    with pytest.raises(KeyboardInterrupt), stop_signals_remembered() as stops:
        os.kill(os.getpid(), signal.SIGINT)
        reached.append(True)
    assert reached == []
    assert stops.received == [signal.SIGINT]


def test_sigterm_still_reaches_the_handler_before_so_the_exit_code_can_name_it(
    unraisable: list[type[BaseException]],
) -> None:
    seen: list[int] = []

    def terminate_as_interrupt(number: int, _frame: object) -> None:
        seen.append(number)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminate_as_interrupt)
    try:
        with stop_signals_remembered() as stops:
            _signal_inside_a_weakref_callback(signal.SIGTERM)
            assert seen == [signal.SIGTERM]
            with pytest.raises(KeyboardInterrupt):
                stops.raise_if_any()
        assert signal.getsignal(signal.SIGTERM) is terminate_as_interrupt
        assert unraisable == []
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_an_ignored_signal_stays_ignored_and_other_unraisable_errors_are_still_printed(
    unraisable: list[type[BaseException]],
) -> None:
    previous, hook = signal.signal(signal.SIGINT, signal.SIG_IGN), sys.unraisablehook
    try:
        with stop_signals_remembered() as stops:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)
            stops.raise_if_any()
            thing = _Collectable()
            keep = weakref.ref(thing, lambda _ref: 1 / 0)
            del thing
            gc.collect()
            assert keep() is None
        assert unraisable == [ZeroDivisionError]
        assert sys.unraisablehook is hook
    finally:
        signal.signal(signal.SIGINT, previous)


def test_sigterm_in_the_block_is_an_interrupt_that_names_sigterm_and_the_handler_comes_back() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with sigterm_as_interrupt() as termination:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
        assert (termination.signal_number, termination.exit_status) == (signal.SIGTERM, 143)
    assert signal.getsignal(signal.SIGTERM) is before


def test_ctrl_c_in_the_block_exits_130() -> None:
    with sigterm_as_interrupt() as termination:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
        assert termination.exit_status == 130


def test_a_sigterm_caught_by_a_nested_block_is_named_by_the_outer_one_too() -> None:
    with sigterm_as_interrupt() as outer:
        with sigterm_as_interrupt() as inner, pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
        assert inner.exit_status == outer.exit_status == 143
        with pytest.raises(KeyboardInterrupt):  # the outer handler is back in place
            os.kill(os.getpid(), signal.SIGTERM)
