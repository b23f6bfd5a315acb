"""The reference tables of ``docs/configuration.md``, made from the schema (never written by hand).

One table per config (the run config, the node config), each between two
markers in the page; :func:`update_docs` replaces what is between them, and
``python -m flower_dl.config --write`` rewrites the page (a test checks that it
is up to date).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from flower_dl import registry
from flower_dl.config.node import NodeConfig
from flower_dl.config.run import RunConfig
from flower_dl.config.schema import Key, allowed, reference_rows, toml_value

SECTIONS: dict[str, type] = {"run-config": RunConfig, "node-config": NodeConfig}
"""Each generated table's name (its markers say it) -> the config class it shows."""


def begin_marker(section: str) -> str:
    """The line that opens a generated table in the docs."""
    return f"<!-- {section} table: generated from flower_dl/config by `python -m flower_dl.config --write` -->"


def end_marker(section: str) -> str:
    """The line that closes a generated table."""
    return f"<!-- end of the {section} table -->"


def _default(value: Any) -> str:
    if value is dataclasses.MISSING:
        return "(required)"
    return "(not set)" if value is None else f"`{toml_value(value)}`"


def _allowed(kind: str, spec: Key) -> str:
    """What a key allows, for the table: a registry's names in code font."""
    names = spec.choices.names() if isinstance(spec.choices, registry.Registry) else spec.choices
    if not names or spec.allowed:
        return allowed(kind, spec).replace("|", "\\|")
    words = ", ".join(f"`{name}`" for name in names)
    if isinstance(spec.choices, registry.Registry) and spec.choices.paths:
        words += ", or an import path `package.module:attribute`"
    return words


def reference_markdown(section: str = "run-config") -> str:
    """The table of one config's keys (``"run-config"`` or ``"node-config"``): key, default, allowed, meaning."""
    lines = ["| key | default | allowed | meaning |", "|---|---|---|---|"]
    for key, default, kind, spec in reference_rows(SECTIONS[section]):
        lines.append(f"| `{key}` | {_default(default)} | {_allowed(kind, spec)} | {spec.description} |")
    return "\n".join(lines) + "\n"


def generated_sections(text: str) -> dict[str, str]:
    """Section name -> what a page holds between its markers (absent: the page has no such section)."""
    found = {}
    for section in SECTIONS:
        pattern = re.escape(begin_marker(section)) + r"\n(.*?)" + re.escape(end_marker(section))
        match = re.search(pattern, text, re.S)
        if match:
            found[section] = match.group(1)
    return found


def update_docs(text: str) -> str:
    """The page with every generated table made again from the schema (the prose around it untouched).

    Raises
    ------
    ValueError
        If a table's markers are missing from the page.
    """
    for section in SECTIONS:
        begin, end = begin_marker(section), end_marker(section)
        if begin not in text or end not in text:
            raise ValueError(f"the page has no {section} table: add the lines {begin!r} and {end!r}")
        head, rest = text.split(begin + "\n", 1)
        _, tail = rest.split(end, 1)
        text = f"{head}{begin}\n{reference_markdown(section)}{end}{tail}"
    return text
