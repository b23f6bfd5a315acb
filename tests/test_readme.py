"""README.md stays true: the test command CI runs is the one it shows; every run-config key is documented."""

from __future__ import annotations

from flower_dl.config import defaults

from .conftest import ROOT


def test_ci_runs_the_readme_test_command() -> None:
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    command = next(line for line in reversed(ci_lines) if line.strip() and not line.startswith("#"))
    assert command in (ROOT / "README.md").read_text()


def test_every_run_config_key_is_documented() -> None:
    readme = (ROOT / "README.md").read_text()
    for key in defaults():
        assert f"| `{key}` |" in readme, key
