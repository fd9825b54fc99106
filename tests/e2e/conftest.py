"""Fixtures of the end-to-end tests: the installed console script, run as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

SCRIPT = str(Path(sys.executable).parent / "msl-ablate")
Cli = Callable[..., subprocess.CompletedProcess]


@pytest.fixture(scope="session")
def cli() -> Cli:
    """``cli(args, cwd, timeout=600)``: run ``msl-ablate <args>`` in a subprocess (the real
    ``sys.argv``, as Lightning's DDP relaunch needs), output captured."""

    def run(args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        return subprocess.run(
            [SCRIPT, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
        )

    return run


SLURM_SCRIPT = Path(__file__).resolve().parents[1] / "services" / "slurm.sh"


@pytest.fixture(scope="session")
def local_slurm() -> None:
    """A real one-node SLURM cluster on this machine (``tests/services/slurm.sh start``: as
    root, installs slurm-wlm and munge if missing); the test is skipped, with the script's reason,
    where it cannot start."""
    started = subprocess.run(["bash", str(SLURM_SCRIPT), "start"], capture_output=True,
                             text=True, timeout=600, stdin=subprocess.DEVNULL)  # fmt: skip
    if started.returncode != 0:
        pytest.skip(f"no local SLURM: {started.stderr.strip() or started.stdout.strip()}")
