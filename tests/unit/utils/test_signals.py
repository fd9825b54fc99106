"""A preemption signal waits for the critical section it lands in."""

from __future__ import annotations

import os
import signal

import pytest

from msl_ablate.utils.signals import deferred_signals


@pytest.fixture
def usr2_calls():
    calls: list[str] = []
    previous = signal.signal(signal.SIGUSR2, lambda signum, frame: calls.append("handled"))
    yield calls
    signal.signal(signal.SIGUSR2, previous)


def test_a_signal_in_the_block_is_handled_after_it(usr2_calls) -> None:
    with deferred_signals():
        os.kill(os.getpid(), signal.SIGUSR2)
        usr2_calls.append("block ran on")
    assert usr2_calls == ["block ran on", "handled"]
    os.kill(os.getpid(), signal.SIGUSR2)  # the handler is back
    assert usr2_calls[-1] == "handled" and len(usr2_calls) == 3


def test_a_handler_that_raises_raises_after_the_block(usr2_calls) -> None:
    def exit_now(signum, frame):
        raise SystemExit(-1)

    signal.signal(signal.SIGUSR2, exit_now)
    finished = []
    with pytest.raises(SystemExit), deferred_signals():
        os.kill(os.getpid(), signal.SIGUSR2)
        finished.append(True)
    assert finished == [True]
