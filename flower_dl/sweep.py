"""Sweeps: a grid of run configs x seeds, one Flower simulation per cell, one tidy table.

The table holds one row per cell x round x node: the cell's identity and the
config keys that define it (:data:`CONFIG_COLUMNS`), then the run's
``metrics.csv`` columns. A cell's id is a hash of its full resolved run config
(seed included), so re-running a sweep skips every cell already in the table,
whatever order the grid was written in.

The table is rewritten through a temporary file and an atomic rename after
each finished cell: a crash or Ctrl-C loses at most the cell in progress and
never leaves a half-written table.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import tempfile
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from flower_dl.files import atomic_write_text, csv_text, default_mode, read_metrics
from flower_dl.results import COLUMNS as METRIC_COLUMNS

CONFIG_COLUMNS: tuple[str, ...] = (
    "cell",
    "seed",
    "strategy",
    "model",
    "dataset",
    "partitioner",
    "digits-per-node",
    "share-ratio",
    "exchange-mode",
    "topology",
    "num-nodes",
    "local-epochs",
    "num-server-rounds",
)
TABLE_COLUMNS: tuple[str, ...] = CONFIG_COLUMNS + METRIC_COLUMNS
TEXT_COLUMNS: tuple[str, ...] = ("cell", "strategy", "model", "dataset", "partitioner", "exchange-mode", "topology")

_PAIR = re.compile(r"""([A-Za-z0-9_.-]+)\s*=\s*(\[[^\]]*\]|'[^']*'|"[^"]*"|[^\s\[]+)""")


class SweepError(ValueError):
    """A malformed grid or results table."""


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


def cell_id(run_config: Mapping[str, Any]) -> str:
    """Stable id of a resolved run config (output locations ignored)."""
    ignored = {"results-dir", "run-name"}
    canonical = json.dumps({k: v for k, v in sorted(run_config.items()) if k not in ignored}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


# ------------------------------------------------------------------- table
def read_table(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The rows of a results table (CSV or .xlsx); ``[]`` if it does not exist yet."""
    path = Path(path)
    if not path.exists():
        return []
    if path.suffix == ".xlsx":
        import pandas as pd

        df = pd.read_excel(path).astype(object)
        return df.where(df.notna(), "").to_dict("records")
    return read_metrics(path)


def done_cells(rows: Iterable[Mapping[str, Any]]) -> set[str]:
    """Cell ids present in a table."""
    return {str(r["cell"]) for r in rows if r.get("cell")}


def append_cell(
    table: str | os.PathLike[str], run_config: Mapping[str, Any], cell: str, metrics_csv: str | os.PathLike[str]
) -> int:
    """Append a finished run's ``metrics.csv`` rows to ``table`` atomically; return the rows added."""
    table = Path(table)
    existing = read_table(table)
    identity = {c: run_config.get(c) for c in CONFIG_COLUMNS if c != "cell"}
    new = [{"cell": cell, **identity, **row} for row in read_metrics(metrics_csv)]
    write_table(table, existing + new)
    return len(new)


def write_table(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Write the whole table atomically (CSV, or .xlsx by extension)."""
    if path.suffix == ".xlsx":
        import pandas as pd

        df = pd.DataFrame(list(rows), columns=list(TABLE_COLUMNS))
        for col in TABLE_COLUMNS:
            if col not in TEXT_COLUMNS:
                df[col] = pd.to_numeric(df[col].replace("", None), errors="coerce")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".xlsx")
        os.close(fd)
        try:
            df.to_excel(tmp, index=False)
            os.chmod(tmp, default_mode())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    else:
        atomic_write_text(path, csv_text(rows, TABLE_COLUMNS))
