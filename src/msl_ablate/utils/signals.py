"""Signals that wait for a critical section to end."""

from __future__ import annotations

import contextlib
import functools
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

# SLURM's warning before a preemption or time limit (submitit asks for it): submitit's handler
# requeues the job and raises SystemExit wherever the main thread is.
PREEMPTION_SIGNALS = (signal.SIGUSR2,)


@contextlib.contextmanager
def deferred_signals(signums: tuple[int, ...] = PREEMPTION_SIGNALS) -> Iterator[None]:
    """Run the block whole: a signal that arrives meanwhile is handled when it ends.

    A handler that raises (submitit's ``SystemExit``) inside an MLflow sqlite write interrupts its
    transaction, and MLflow's session turns the exit into a "database is locked" error that
    fails the job instead of requeuing it. Python runs handlers in the main thread only, so
    elsewhere this does nothing.
    """
    # Only Python-installed handlers can be put back (getsignal gives None for others).
    signums = tuple(s for s in signums if signal.getsignal(s) is not None)
    if threading.current_thread() is not threading.main_thread() or not signums:
        yield
        return
    pending: list[int] = []
    previous = {s: signal.signal(s, lambda signum, _frame: pending.append(signum)) for s in signums}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in pending:
            handler = previous[signum]
            if callable(handler):
                handler(signum, None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(signum)


def shielded(fn: F) -> F:
    """``fn`` run inside ``deferred_signals`` (for methods that write to a store)."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        with deferred_signals():
            return fn(*args, **kwargs)

    return run  # type: ignore[return-value]
