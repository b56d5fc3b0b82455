"""Ctrl-C and SIGTERM held back while a worker pool forks, then delivered to the handlers before."""

from __future__ import annotations

import os
import signal

import pytest

from pose_regressor_training.stop_signals import leave_stop_signals_to_parent, stop_signals_deferred


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
