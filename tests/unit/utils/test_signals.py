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


def test_every_tracker_write_waits_for_its_end(usr2_calls, tmp_path) -> None:
    from omegaconf import OmegaConf

    from msl_ablate.tracking.mlflow_run import Tracker

    tracker = Tracker(OmegaConf.create({"enabled": True, "experiment": "signals",
                                        "tracking_uri": f"sqlite:///{tmp_path}/mlflow.db",
                                        "artifact_location": None}))  # fmt: skip
    run_id, _ = tracker.open("training", "k", "k", {})
    real = tracker.client.log_batch

    def signalled_mid_write(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGUSR2)
        usr2_calls.append("write ended")
        return real(*args, **kwargs)

    tracker.client.log_batch = signalled_mid_write
    tracker.set_tags(run_id, {"stage": "align"})
    tracker.log_metrics(run_id, {"loss": 1.0}, step=1)
    assert usr2_calls == ["write ended", "handled"] * 2
    assert tracker.client.get_run(run_id).data.tags["stage"] == "align"
