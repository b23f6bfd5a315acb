"""Shared fixtures: the repository root and a helper to run the ``flower-dl`` command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``flower-dl`` (this environment's) from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "flower_dl.cli", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture
def root() -> Path:
    return ROOT
