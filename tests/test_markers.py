"""The ``e2e`` marker stays honest: a test not marked ``e2e`` cannot start Flower or Ray (conftest's guard)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import starts_flower


@pytest.mark.parametrize(
    ("args", "started"),
    [
        (["/venv/bin/flwr", "run", ".", "local"], "flwr"),
        (["flower-superlink", "--insecure"], "flower-superlink"),
        ("flower-supernode --insecure", "flower-supernode"),
        (["ray", "start", "--head"], "ray"),
        ([sys.executable, "-m", "flower_dl.launch.ray_head", "--port", "1"], "flower_dl.launch.ray_head"),
        ([sys.executable, "-m", "flower_dl.launch.cli", "sweep", "-t", "t.csv"], "flower-dl sweep"),
        ([sys.executable, "-m", "flower_dl.launch.cli", "split", "-o", "x"], None),
        ([sys.executable, "-c", "print(1)"], None),
        (["git", "rev-parse", "HEAD"], None),
    ],
)
def test_which_commands_start_flower_or_ray(args, started) -> None:
    assert starts_flower(args) == started


def test_an_unmarked_test_that_starts_flower_fails_before_it_starts() -> None:
    with pytest.raises(pytest.fail.Exception, match=r"starts flwr .*mark it @pytest.mark.e2e"):
        subprocess.run(["/nonexistent/flwr", "--version"], check=False)
    assert subprocess.run([sys.executable, "-c", "pass"], check=False).returncode == 0  # anything else starts
