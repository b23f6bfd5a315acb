"""The package's layout: modules small enough to read whole, and the few that are not say why."""

from __future__ import annotations

import ast
import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 400
"""The most lines a module of ``flower_dl`` has, unless :data:`LONGER` names it."""

BEING_SPLIT = "being split"
LONGER: dict[str, str] = {
    "flower_dl/protocol.py": "every message's record keys spelt once, each builder beside its parser, with one "
    "table of the messages in its docstring",
}
"""Modules (or ``fnmatch`` patterns) allowed over :data:`MAX_LINES`, each with its reason."""


def modules() -> dict[str, int]:
    """Every module of ``flower_dl`` (path from the repository root) and its line count."""
    return {
        p.relative_to(ROOT).as_posix(): len(p.read_text(encoding="utf-8").splitlines())
        for p in sorted((ROOT / "flower_dl").rglob("*.py"))
    }


def allowed(path: str) -> str | None:
    """The reason :data:`LONGER` gives ``path``, or ``None``."""
    return next((reason for pattern, reason in LONGER.items() if fnmatch.fnmatch(path, pattern)), None)


def test_no_module_is_over_the_limit_unless_listed_with_a_reason() -> None:
    too_long = {path: n for path, n in modules().items() if n > MAX_LINES and allowed(path) is None}
    assert too_long == {}, f"split these by concern, or list them in LONGER with the reason: {too_long}"


def test_every_listed_module_exists_and_a_long_one_says_why_in_its_docstring() -> None:
    on_disk = modules()
    for pattern, reason in LONGER.items():
        assert reason and any(fnmatch.fnmatch(p, pattern) for p in on_disk), f"{pattern} names no module"
        if reason == BEING_SPLIT:
            continue
        for path in (p for p in on_disk if fnmatch.fnmatch(p, pattern)):
            doc = ast.get_docstring(ast.parse((ROOT / path).read_text(encoding="utf-8"))) or ""
            assert "over ~400 lines" in doc, f"{path}: its docstring must say why it is one module over ~400 lines"


def test_the_check_fires_on_a_long_module() -> None:
    assert allowed("flower_dl/report/table.py") is None and allowed("flower_dl/launch/cli.py") is None
    assert allowed("flower_dl/protocol.py") != BEING_SPLIT
