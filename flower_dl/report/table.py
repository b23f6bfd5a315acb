"""The results table of :mod:`flower_dl.report`: reading it, checking its provenance, the keys that vary in it.

:func:`read_table` reads and checks a sweep's table (through the sweep's own
reader, :func:`flower_dl.results.table.read_columns_and_rows`),
:func:`check_provenance` refuses rows of different data or code,
:func:`varying_keys` names the run-config keys that vary in it;
:func:`final_rows` and :func:`pareto_front` are public helpers. The keys
that name a configuration are defined here; its labels are made in
:mod:`flower_dl.report.labels` (:func:`~flower_dl.report.labels._prepare`,
see "Grouping" there), its statistics in :mod:`flower_dl.report.stats`,
numbers formatted in :mod:`flower_dl.report.values`.
"""

from __future__ import annotations

import errno
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flower_dl import registry
from flower_dl.report.values import _NA, _column, _fmt_num, _fmt_value, _isnan, _match, _uniques
from flower_dl.results.columns import CODE_COLUMNS, CONFIG_COLUMNS, TABLE_COLUMNS, TEXT_COLUMNS
from flower_dl.results.table import read_columns_and_rows

REQUIRED_COLUMNS: tuple[str, ...] = (
    "cell",
    "strategy",
    "digits-per-node",
    "share-ratio",
    "round",
    "node",
    "accuracy",
)
"""Columns :func:`read_table` insists on; any other of :data:`TABLE_COLUMNS` that
is missing is added empty."""

NUMERIC_COLUMNS: tuple[str, ...] = tuple(c for c in TABLE_COLUMNS if c not in TEXT_COLUMNS and c != "failed")
"""Columns coerced to numbers (a cell that is not a number becomes NaN)."""

GROUP_COLUMNS: tuple[str, ...] = ("strategy", "model", "digits-per-node", "share-ratio")
"""The columns the main table of ``summary.md`` names first; its rows are the configurations
(every varying key but the seed, see "Grouping" in :mod:`flower_dl.report.labels`), these sorted first."""

DATA_KEYS: tuple[str, ...] = ("digits-per-node", "share-ratio")
"""The data settings: the x-axes and panels of the figures, what the "Per strategy" and
"Per exchange mechanism" tables average over by design."""

SERIES_KEYS: tuple[str, ...] = (
    "strategy",
    "mixing-schedule",
    "gossip-steps",
    "compression",
    "compression-ratio",
    "choco-gamma",
)
"""Keys the ``series`` label names (:func:`_series_labels`)."""

EXCHANGE_KEYS: tuple[str, ...] = ("exchange-mechanism", "exchange-noise", "mixup-size")
"""Keys the ``exchange`` and ``mechanism`` labels name (:func:`_mechanism_labels`); the
"Per strategy" table averages over them by design."""

SETTING_KEYS: tuple[str, ...] = tuple(
    c for c in CONFIG_COLUMNS if c not in ("seed", "model", *DATA_KEYS, *SERIES_KEYS, *EXCHANGE_KEYS)
)
"""Every other run-config key: named in the ``setting`` label as ``"<key> <value>"`` when it varies
(a key added to the run config lands here)."""

DECENTRALIZED_STRATEGIES: tuple[str, ...] = registry.strategies_of_kind("decentralized")
"""Strategies that gossip, so that ``mixing-schedule`` and ``gossip-steps`` describe
them (the table records those keys for every run, parameter-server ones too). A
user's strategy (an import path) is decentralized too: it subclasses the base."""


def _decentralized(strategy: pd.Series) -> pd.Series:
    return strategy.isin(DECENTRALIZED_STRATEGIES) | strategy.astype(str).str.contains(":", regex=False)


COMPRESSED_STRATEGIES: tuple[str, ...] = ("choco",)
"""Strategies that compress what they gossip, so that ``compression`` and
``compression-ratio`` describe them (the table records those keys for every run)."""

RATIO_COMPRESSIONS: tuple[str, ...] = ("top-k", "random-k")
"""Compressions whose ``compression-ratio`` matters (the fraction of coordinates kept)."""

CONSENSUS_STEP_STRATEGIES: tuple[str, ...] = ("choco",)
"""Strategies whose ``choco-gamma`` (the consensus step size) describes them (the
table records it for every run)."""

RUN_NODE_METRICS: tuple[str, ...] = ("leakage", "exposed-fraction", "nn-distance")
"""Metric columns that hold one value per node for the whole run, repeated on
each of its rows (what the exchange phase exposed); a node's value is the mean
of its non-empty cells."""

FINAL_NODE_METRICS: tuple[str, ...] = (
    "accuracy", "mia-auc", "mia-tpr-1fpr", "mia-tpr-0.1fpr", "rmia-auc", "rmia-tpr-1fpr", "rmia-tpr-0.1fpr",
    "sent-mia-auc", "sent-mia-tpr-1fpr", "sent-mia-tpr-0.1fpr", "sent-rmia-auc", "sent-rmia-tpr-1fpr",
    "sent-rmia-tpr-0.1fpr", "dp-epsilon", "central-dp-epsilon",
)  # fmt: skip
"""Metric columns measured per node and round, taken at each run's last round (the attacks on the
evaluated model, those on the model each node sent, which always run in the last round, and DP-SGD's and
central DP's epsilons over the whole training)."""

_MECHANISM_RANK: dict[str, int] = {"no exchange": 0, "raw": 1, "noise": 2, "mixup": 3}
"""The order of the exchange mechanisms in the report: none, the study's raw
sharing, then the privatized ones (unknown mechanisms last)."""


_TRUE = {"1", "1.0", "true", "yes", "y", "t"}


# ------------------------------------------------------------------- reading
def read_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a sweep's results table (``.csv`` or ``.xlsx``) and check it.

    Parameters
    ----------
    path : str or os.PathLike
        The table; its suffix picks the reader (``.xlsx`` needs openpyxl): the
        sweep's own, :func:`flower_dl.results.table.read_columns_and_rows`.

    Returns
    -------
    pandas.DataFrame
        One row per run x round x node. The :data:`NUMERIC_COLUMNS` are floats
        (non-numbers become NaN), ``cell`` and the other text columns are
        strings, ``failed`` is boolean. Columns of :data:`TABLE_COLUMNS` that
        the table lacks (other than the required ones) are added empty. When a
        ``(cell, round, node)`` appears more than once (a run appended again),
        the last row wins.

    Raises
    ------
    ValueError
        If the format is not supported, a column of :data:`REQUIRED_COLUMNS`
        is missing, the table has no rows, a row has no ``cell``, or an
        accuracy lies outside [0, 1]. The message starts with
        ``results table '<path>':``.
    """
    path = Path(path)
    where = f"results table '{path}'"
    if path.suffix.lower() not in (".csv", ".xlsx"):
        raise ValueError(f"{where}: unsupported format {path.suffix!r} (expected .csv or .xlsx)")
    if not path.is_file():
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))
    columns, records = read_columns_and_rows(path)
    df = pd.DataFrame(records, columns=columns)

    df = df.rename(columns=lambda c: str(c).strip())
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{where}: missing columns {', '.join(missing)} (required: {', '.join(REQUIRED_COLUMNS)})")
    if df.empty:
        raise ValueError(f"{where}: no rows")
    for col in TABLE_COLUMNS:
        if col not in df.columns:
            df[col] = np.nan
    for col in NUMERIC_COLUMNS:
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    for col in TEXT_COLUMNS:
        df[col] = df[col].map(_text).astype(object)
    df["failed"] = df["failed"].map(_truthy).astype(bool)

    no_cell = df["cell"].isna()
    if no_cell.any():
        rows = ", ".join(str(i + 2) for i in np.flatnonzero(no_cell.to_numpy())[:5])
        raise ValueError(f"{where}: {int(no_cell.sum())} row(s) without a 'cell' (table lines {rows} ...)")
    acc = df["accuracy"]
    bad = acc.notna() & ((acc < 0) | (acc > 1))
    if bad.any():
        first = df.loc[bad].iloc[0]
        raise ValueError(
            f"{where}: accuracy must be a fraction in [0, 1]; found {first['accuracy']:g} "
            f"(cell {first['cell']!r}, round {_fmt_num(first['round'])}, node {_fmt_num(first['node'])})"
        )
    df = df.drop_duplicates(subset=["cell", "round", "node"], keep="last")
    return df.reset_index(drop=True)


def _text(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return np.nan
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text if text and text.lower() != "nan" else np.nan


def _truthy(value: Any) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return value != 0
    return str(value).strip().lower() in _TRUE


# ---------------------------------------------------------------- provenance
def check_provenance(df: pd.DataFrame, *, allow_mixed: bool = False, where: str = "results table") -> list[str]:
    """Refuse rows of different data or code, unless told to put them side by side.

    Two runs of one dataset with different data digests did not train on the
    same data, and rows of two code versions were not made by the same
    program: a difference between them may be the data's or the code's, not
    the setting's. Empty provenance (an older table) says nothing and is
    accepted.

    Parameters
    ----------
    df : pandas.DataFrame
        A table read by :func:`read_table`.
    allow_mixed : bool
        Return what is mixed instead of raising (``flower-dl report --allow-mixed``).
    where : str
        How the error message names the table.

    Returns
    -------
    list[str]
        One sentence per mix found, naming the column and its distinct values
        (with the number of runs of each); empty when nothing is mixed.

    Raises
    ------
    ValueError
        If something is mixed and ``allow_mixed`` is false: rows with the same
        ``dataset`` and different non-empty ``data-digest`` values, or rows
        with different non-empty values of a column of
        :data:`~flower_dl.results.columns.CODE_COLUMNS`. The message names the
        columns and values and says to pass ``--allow-mixed``.
    """
    mixed = _mixed_provenance(df)
    if mixed and not allow_mixed:
        raise ValueError(
            f"{where}: rows of different data or code: {'; '.join(mixed)}; "
            "pass --allow-mixed to report them side by side"
        )
    return mixed


def _mixed_provenance(df: pd.DataFrame) -> list[str]:
    """The sentences of :func:`check_provenance`: data digests per dataset, then the code columns."""
    out = []
    if "data-digest" in df.columns:
        datasets = _column(df, "dataset")
        for dataset in _uniques(datasets):
            rows = df[_match(datasets, dataset)]
            if rows["data-digest"].nunique() > 1:
                name = _NA if _isnan(dataset) else repr(str(dataset))
                out.append(f"data-digest differs for dataset {name}: {_value_runs(rows, 'data-digest')}")
    for col in CODE_COLUMNS:
        if col in df.columns and df[col].nunique() > 1:
            out.append(f"{col} differs: {_value_runs(df, col)}")
    return out


def _value_runs(df: pd.DataFrame, col: str) -> str:
    """``"abc (2 runs), def (1 run)"``: the distinct non-empty values of ``col`` and how many runs carry each."""
    runs = df.dropna(subset=[col]).groupby(col, sort=True)["cell"].nunique()
    return ", ".join(f"{v} ({n} run{'' if n == 1 else 's'})" for v, n in runs.items())


def _code_versions(df: pd.DataFrame) -> str:
    """``"flower-dl-version 0.3.0, git-commit abc"``: the code that made the table, empty when not recorded."""
    parts = []
    for col in CODE_COLUMNS:
        values = _uniques(df[col].dropna()) if col in df.columns else []
        if values:
            parts.append(f"{col} {', '.join(str(v) for v in values)}")
    return "; ".join(parts)


# --------------------------------------------------------------- varying keys
def varying_keys(df: pd.DataFrame) -> list[str]:
    """The run-config keys that vary in a table: every one but ``seed`` keeps its runs apart.

    Parameters
    ----------
    df : pandas.DataFrame
        A results table (or one row per run).

    Returns
    -------
    list[str]
        The columns of :data:`~flower_dl.results.columns.CONFIG_COLUMNS` present in
        ``df`` with more than one distinct value, in that order, ``seed`` left
        out. An empty cell counts as a value of its own only where other rows
        have one: a key an older table did not record is not varying, one some
        rows recorded and others did not is.
    """
    return [c for c in CONFIG_COLUMNS if c != "seed" and c in df.columns and df[c].nunique(dropna=False) > 1]


def _averaged_over(df: pd.DataFrame, by: str | Sequence[str]) -> list[tuple[str, list[Any]]]:
    """The varying keys that groups of ``by`` average (or pool) over, with the values each takes in the table.

    What a part of the report that groups by less than the full configuration
    says in its heading: a key is listed when some group of ``by`` holds runs
    with two of its values. Computed from the columns, not from the labels,
    so it also names what a label would hide.

    Parameters
    ----------
    df : pandas.DataFrame
        A table prepared by :func:`_prepare`.
    by : str or sequence of str
        The grouping columns.

    Returns
    -------
    list[tuple[str, list]]
        ``(key, sorted distinct values)`` per such key, in
        :data:`~flower_dl.results.columns.CONFIG_COLUMNS` order; empty when every
        group is one configuration (only seeds are averaged).
    """
    cells = df.drop_duplicates("cell")
    by = [by] if isinstance(by, str) else list(by)
    groups = cells.groupby(by, dropna=False, sort=False)
    return [
        (k, _uniques(cells[k]))
        for k in varying_keys(cells)
        if k not in by and groups[k].nunique(dropna=False).max() > 1
    ]


def _fmt_averaged(items: Sequence[tuple[str, Sequence[Any]]]) -> str:
    """``"digits-per-node (2, 4) and share-ratio (0, 0.1)"`` (empty for no items)."""
    parts = [f"{key} ({', '.join(_fmt_value(v) for v in values)})" for key, values in items]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + (f" and {parts[-1]}" if parts else "")


def final_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of each cell's last round.

    Parameters
    ----------
    df : pandas.DataFrame
        A results table (columns ``cell`` and ``round`` at least).

    Returns
    -------
    pandas.DataFrame
        A copy of the rows whose ``round`` is the largest of their cell
        (cells without any round are left out).
    """
    last = df.groupby("cell", sort=False)["round"].transform("max")
    return df[df["round"] == last].copy()


def pareto_front(points: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated points of the privacy/accuracy trade-off.

    Parameters
    ----------
    points : numpy.ndarray
        Shape ``(n, 2)``: ``(leakage, accuracy)`` per point. Lower leakage and
        higher accuracy are better.

    Returns
    -------
    numpy.ndarray
        Integer indices of the points that no other point dominates (a point
        dominates another if it is no worse in both and better in one), sorted
        by leakage (exact duplicates are all kept, by index). Points with a NaN
        are never on the front. Along the result, accuracy increases.

    Raises
    ------
    ValueError
        If ``points`` is not of shape ``(n, 2)``.
    """
    pts = np.asarray(points, dtype=float)
    if pts.size == 0:
        return np.zeros(0, dtype=int)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must have shape (n, 2), got {pts.shape}")
    leak, acc = pts[:, 0], pts[:, 1]
    idx = np.flatnonzero(~np.isnan(pts).any(axis=1))
    # leakage ascending, then accuracy descending, then index
    order = idx[np.lexsort((idx, -acc[idx], leak[idx]))]
    front: list[int] = []
    best_acc, best_leak = -np.inf, np.nan
    for i in order:
        if acc[i] > best_acc:
            front.append(int(i))
            best_acc, best_leak = acc[i], leak[i]
        elif acc[i] == best_acc and leak[i] == best_leak:
            front.append(int(i))  # an exact duplicate of a front point
    return np.asarray(front, dtype=int)
