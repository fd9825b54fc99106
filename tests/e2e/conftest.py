"""Fixtures of the end-to-end tests: the installed console script, run as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
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
MLFLOW_SCRIPT = SLURM_SCRIPT.with_name("mlflow_server.sh")


@pytest.fixture(scope="session")
def local_slurm() -> None:
    """A real one-node SLURM cluster on this machine (``tests/services/slurm.sh start``: as
    root, installs slurm-wlm and munge if missing); the test is skipped, with the script's reason,
    where it cannot start."""
    started = subprocess.run(["bash", str(SLURM_SCRIPT), "start"], capture_output=True,
                             text=True, timeout=600, stdin=subprocess.DEVNULL)  # fmt: skip
    if started.returncode != 0:
        pytest.skip(f"no local SLURM: {started.stderr.strip() or started.stdout.strip()}")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real MLflow tracking server backed by PostgreSQL (``tests/services/mlflow_server.sh``),
    its URI; skipped, with the script's reason, where it cannot start."""
    import tempfile

    # Under /tmp itself: as root, PostgreSQL runs as `postgres`, which must reach the folder.
    folder = Path(tempfile.mkdtemp(prefix="msl-mlflow-server-", dir="/tmp"))
    folder.chmod(0o755)
    env = {**os.environ, "MLFLOW_PORT": str(_free_port()), "PG_PORT": str(_free_port()),
           "MLFLOW": str(Path(sys.executable).parent / "mlflow")}  # fmt: skip
    script = ["bash", str(MLFLOW_SCRIPT)]
    started = subprocess.run([*script, "start", str(folder)], capture_output=True, text=True,
                             timeout=300, env=env, stdin=subprocess.DEVNULL)  # fmt: skip
    if started.returncode != 0:
        subprocess.run([*script, "stop", str(folder)], env=env, capture_output=True, timeout=120)
        pytest.skip(f"no MLflow server: {started.stderr.strip() or started.stdout.strip()}")
    try:
        yield started.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run([*script, "stop", str(folder)], env=env, capture_output=True, timeout=120)
