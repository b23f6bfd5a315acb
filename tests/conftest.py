"""Shared fixtures: the repository root and a helper to run the ``flower-dl`` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def python_output(code: str, timeout: float = 120) -> str:
    """What ``python -c code`` prints in a fresh interpreter (e.g. which modules an import pulls in)."""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def run_cli(*args: str, timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``flower-dl`` (this environment's) from the repository root (``env``: extra variables)."""
    return subprocess.run(
        [sys.executable, "-m", "flower_dl.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="session", autouse=True)
def private_cache_dir(tmp_path_factory) -> Path:
    """flower-dl's cache (decoded datasets) in a temp dir, for this process and the Flower processes it starts."""
    from flower_dl.data import CACHE_DIR_ENV

    path = tmp_path_factory.mktemp("flower-dl-cache")
    os.environ[CACHE_DIR_ENV] = str(path)
    return path


@pytest.fixture
def root() -> Path:
    return ROOT


TWO_ROUNDS = "num-server-rounds=2 local-epochs=1"


@pytest.fixture(scope="session")
def sim_two_rounds(tmp_path_factory):
    """One 5-node, 2-round simulation with defaults otherwise; shared by the tests that compare with it."""
    out = tmp_path_factory.mktemp("sim")
    proc = run_cli("run", "-c", f"{TWO_ROUNDS} run-name='e2e' results-dir='{out}'")
    return proc, out / "e2e"
