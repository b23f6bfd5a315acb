"""A sweep's grid: ``--grid`` text and sweep files parsed, and every combination x seed expanded.

Pure parsing, no Flower: :mod:`flower_dl.launch.cli` resolves and validates
each combination's config into a :class:`flower_dl.launch.sweep.Cell` before
anything runs.
"""

from __future__ import annotations

import itertools
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from typing import Any

_PAIR = re.compile(r"""([A-Za-z0-9_.-]+)\s*=\s*(\[[^\]]*\]|'[^']*'|"[^"]*"|[^\s\[]+)""")


class SweepError(ValueError):
    """A malformed grid or sweep file."""


def parse_grid(text: str) -> dict[str, list[Any]]:
    """``"share-ratio=[0, 0.1] digits-per-node=[2,4] model='cnn'"`` -> ``{key: [values]}``.

    Values are TOML; a scalar is a one-value axis.
    """
    grid: dict[str, list[Any]] = {}
    rest = _PAIR.sub("", text).strip()
    if rest:
        raise SweepError(f'--grid: cannot parse {rest!r}; expected key=[v1, v2] pairs, e.g. "share-ratio=[0, 0.1]"')
    for key, raw in _PAIR.findall(text):
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError as err:
            raise SweepError(f"--grid: {key}: {raw!r} is not a TOML value or array ({err})") from err
        grid[key] = value if isinstance(value, list) else [value]
        if not grid[key]:
            raise SweepError(f"--grid: {key}: the list of values is empty")
    return grid


def load_grid_file(path: str | os.PathLike[str]) -> tuple[dict[str, list[Any]], dict[str, Any], list[int]]:
    """A sweep TOML file: ``[grid]`` (lists), optional ``[run-config]`` (fixed values), optional ``seeds``."""
    with open(path, "rb") as fh:
        data = tomllib.load(fh)
    unknown = set(data) - {"grid", "run-config", "seeds"}
    if unknown:
        raise SweepError(f"{path}: unknown table(s) {sorted(unknown)}; allowed: grid, run-config, seeds")
    grid = {k: (v if isinstance(v, list) else [v]) for k, v in data.get("grid", {}).items()}
    seeds = data.get("seeds", [])
    if not isinstance(seeds, list) or not all(isinstance(s, int) for s in seeds):
        raise SweepError(f"{path}: seeds must be a list of integers")
    return grid, dict(data.get("run-config", {})), seeds


def expand(grid: Mapping[str, Sequence[Any]], seeds: Sequence[int]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, for every seed (seed varies fastest)."""
    keys = list(grid)
    cells = []
    for values in itertools.product(*(grid[k] for k in keys)):
        for seed in seeds:
            cells.append({**dict(zip(keys, values)), "seed": seed})
    return cells
