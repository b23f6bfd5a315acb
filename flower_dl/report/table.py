"""The results table of :mod:`flower_dl.report`: reading it, its labels and keys, its statistics, number formatting.

:func:`read_table` reads and checks a sweep's table, :func:`check_provenance`
refuses rows of different data or code, :func:`varying_keys` names the
run-config keys that vary in it; :func:`final_rows` and :func:`pareto_front`
are public helpers. :func:`_prepare` gives every row its run's labels and
keys (see "Grouping" below); the ``_*_stats`` functions compute the per-run,
per-group and per-node statistics every figure and the summary share,
following the accuracy and leakage conventions of :mod:`flower_dl.report`.

Grouping
--------
Only seeds are ever averaged. A run's *configuration* is the value of every
key of :data:`~flower_dl.results.columns.CONFIG_COLUMNS` that varies in the table
(:func:`varying_keys`) but ``seed``; :func:`_prepare` writes it as the
``config`` key of each row, and the main table of ``summary.md`` and every
point of every figure is one configuration. The key is built from the
columns themselves, not from the labels, so a run-config key added later is
a grouping key from its first sweep on, whether or not the report knows it.

The labels only name a configuration for the reader, each from its own
class of keys:

* ``series``: the algorithm (:data:`SERIES_KEYS`, see :func:`_series_labels`);
* ``exchange`` and ``mechanism``: what the exchange phase sends
  (:data:`EXCHANGE_KEYS`, see :func:`_mechanism_labels`);
* ``setting``: every other varying key but the model and the
  :data:`DATA_KEYS`, as ``"<key> <value>"``, e.g. ``"lr 0.05, momentum 0.9"``
  (empty when none varies);
* ``line-label``: series, model, exchange and setting together, what a
  figure's line is called.

:func:`_series_labels` names a gossip setting only for the strategies that
read it, so that a parameter server is called ``fedavg`` whatever mixing
schedule the sweep recorded for it. Runs that differ only in such a key
compute the same thing, but they are still different runs: they are never
averaged together, and :func:`_distinguish` adds the key to their label
(``"fedavg, mixing-schedule epidemic"``) so that the reader can tell their
rows apart. The same holds for an exchange key a mechanism does not read
(the noise std of raw sharing).

Some parts of the report average over data settings by design (the "Per
strategy" and "Per exchange mechanism" tables, the mechanism means): they
group by a key with the :data:`DATA_KEYS` (and, per strategy, the
:data:`EXCHANGE_KEYS`) left out, and :func:`_averaged_over` names what they
then average over, with its values, for their headings.
"""

from __future__ import annotations

import errno
import math
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flower_dl import registry
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
(every varying key but the seed, see "Grouping" above), these sorted first."""

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


_NA = "n/a"
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
    columns, rows = read_columns_and_rows(path)
    df = pd.DataFrame(rows, columns=columns)

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


# ------------------------------------------------------------ labels and keys
_RUN_LABELS: tuple[str, ...] = (
    "series",
    "exchange",
    "mechanism",
    "setting",
    "line-label",
    "config",
    "line",
    "algorithm",
)
"""The columns :func:`_prepare` adds: one value per run (see :func:`_run_labels`)."""

_CELL_LABELS: tuple[str, ...] = tuple(dict.fromkeys((*GROUP_COLUMNS, "seed", *_RUN_LABELS, *CONFIG_COLUMNS)))
"""A run's labels, keys and config, carried into every per-run and per-node statistic."""


def _prepare(df: pd.DataFrame) -> pd.DataFrame:
    """Strings for missing labels; failed node-rounds lose their accuracy; every row gets its run's labels and keys.

    Parameters
    ----------
    df : pandas.DataFrame
        A table read by :func:`read_table`.

    Returns
    -------
    pandas.DataFrame
        A copy with ``"n/a"`` for a missing ``strategy`` or ``model``, NaN
        accuracy on failed node-rounds, and the columns of
        :func:`_run_labels` (computed once per run, on its first row).
    """
    out = df.drop(columns=[c for c in _RUN_LABELS if c in df.columns])
    for col in ("strategy", "model"):
        out[col] = out[col].fillna(_NA).astype(str)
    out.loc[out["failed"].astype(bool), "accuracy"] = np.nan
    runs = out.drop_duplicates("cell").set_index("cell")
    return out.join(_run_labels(runs), on="cell")


def _run_labels(runs: pd.DataFrame) -> pd.DataFrame:
    """The labels and grouping keys of each run (see "Grouping" in the module docstring).

    Parameters
    ----------
    runs : pandas.DataFrame
        One row per run (its config columns), ``strategy`` and ``model`` as strings.

    Returns
    -------
    pandas.DataFrame
        Aligned with ``runs``, columns:

        ``series``
            :func:`_series_labels`, told apart by :func:`_distinguish` over
            :data:`SERIES_KEYS`.
        ``exchange``
            What the run's mechanism sends, whatever its share ratio
            (``raw``, ``noise 0.1``, ``mixup 4``), told apart over
            :data:`EXCHANGE_KEYS`.
        ``mechanism``
            ``exchange``, but ``"no exchange"`` at share ratio 0 (``"no exchange
            (<exchange>)"`` where such runs differ in their exchange keys).
        ``setting``
            ``"<key> <value>"`` for each varying key of :data:`SETTING_KEYS`,
            joined by ``", "``; empty when none varies.
        ``line-label``
            A figure's name for the run's line: the strategy (marked DE or PS)
            and its series settings, then the model, exchange and setting
            where they vary.
        ``config``
            The run's configuration: every varying key but the seed, exact.
            Runs with one ``config`` differ only in seed.
        ``line``
            ``config`` without the :data:`DATA_KEYS`: a figure's line across
            data settings.
        ``algorithm``
            ``line`` without the :data:`EXCHANGE_KEYS` either: a row of the
            "Per strategy" table.
    """
    varying = varying_keys(runs)
    series = _distinguish(runs, _series_labels(runs), SERIES_KEYS)
    exchange = _distinguish(runs, _exchange_labels(runs), EXCHANGE_KEYS)
    no_exchange = _column(runs, "share-ratio").eq(0)
    if exchange[no_exchange].nunique() > 1:
        mechanism = exchange.where(~no_exchange, "no exchange (" + exchange + ")")
    else:
        mechanism = exchange.where(~no_exchange, "no exchange")
    setting = _setting_labels(runs, [k for k in varying if k in SETTING_KEYS])
    shown = {
        "model": "model" in varying,
        "exchange": any(k in varying for k in EXCHANGE_KEYS),
    }
    line_label = [
        _line_name(s, label, model if shown["model"] else "", ex if shown["exchange"] else "", st)
        for s, label, model, ex, st in zip(runs["strategy"], series, runs["model"], exchange, setting)
    ]
    return pd.DataFrame(
        {
            "series": series,
            "exchange": exchange,
            "mechanism": mechanism,
            "setting": setting,
            "line-label": pd.Series(line_label, index=runs.index, dtype=object),
            "config": _config_keys(runs, varying),
            "line": _config_keys(runs, [k for k in varying if k not in DATA_KEYS]),
            "algorithm": _config_keys(runs, [k for k in varying if k not in (*DATA_KEYS, *EXCHANGE_KEYS)]),
        },
        index=runs.index,
    )


def _line_name(strategy: str, series: str, model: str, exchange: str, setting: str) -> str:
    """``"decentralized (DE), epidemic, cnn, noise 0.1, lr 0.05"``: the non-empty parts of a line label."""
    head = _strategy_label(strategy) + series[len(strategy) :] if series.startswith(strategy) else series
    return ", ".join(p for p in (head, model, exchange, setting) if p)


def _distinguish(runs: pd.DataFrame, labels: pd.Series, keys: Sequence[str]) -> pd.Series:
    """``labels``, with ``", <key> <value>"`` added for each of ``keys`` that varies among the runs of one label.

    A label names only the keys that describe what ran (a parameter server's
    recorded mixing schedule is left out of ``"fedavg"``); runs that differ in
    such a key are still different runs, so that their label must tell them
    apart. After this, two runs with one label agree on every key of ``keys``.
    """
    present = [k for k in keys if k in runs.columns]
    out = labels.copy()
    for label in labels.unique():
        mask = labels == label
        group = runs.loc[mask, present]
        for key in (k for k in present if group[k].nunique(dropna=False) > 1):
            out[mask] = out[mask] + ", " + _tokens(group[key], key)
    return out


def _tokens(values: pd.Series, key: str) -> pd.Series:
    """``"<key> <value>"`` per value (``"lr 0.05"``)."""
    return pd.Series([f"{key} {_fmt_value(v)}" for v in values], index=values.index, dtype=object)


def _setting_labels(runs: pd.DataFrame, keys: Sequence[str]) -> pd.Series:
    """``"lr 0.05, momentum 0.9"``: ``"<key> <value>"`` for each of ``keys``, empty where there are none."""
    if not keys:
        return pd.Series("", index=runs.index, dtype=object)
    parts = [_tokens(runs[k], k) for k in keys]
    return pd.Series([", ".join(p) for p in zip(*parts)], index=runs.index, dtype=object)


def _config_keys(runs: pd.DataFrame, keys: Sequence[str]) -> pd.Series:
    """An exact, hashable key per run of its values of ``keys`` (``""`` for no keys).

    Made from the values themselves (floats by ``repr``), never from the
    rounded text of a label, so that two values a label would print alike
    still make two keys.
    """
    if not keys:
        return pd.Series("", index=runs.index, dtype=object)
    parts = [[f"{k}={_exact(v)}" for v in runs[k]] for k in keys]
    return pd.Series(["|".join(p) for p in zip(*parts)], index=runs.index, dtype=object)


def _exact(v: Any) -> str:
    if _isnan(v):
        return "nan"
    if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_)):
        return repr(float(v))
    return str(v)


def _column(df: pd.DataFrame, name: str) -> pd.Series:
    """``df[name]``, or an empty (all-NaN) column where ``df`` lacks it.

    :func:`read_table` adds every missing column, but the label functions are
    also handed partial frames; a setting a table does not have is simply not
    recorded.
    """
    if name in df.columns:
        return df[name]
    return pd.Series(np.nan, index=df.index, dtype=object)


def _series_labels(df: pd.DataFrame) -> pd.Series:
    """The algorithm of each row, as the per-strategy figures and summary name it.

    A strategy alone does not say which algorithm ran: a decentralized one
    also depends on its mixing schedule and gossip steps, Choco on its
    compression and its consensus step ``choco-gamma``. Those settings join
    the label when they take more than one value in the table, so that runs
    that differ in them are kept apart, and only for the strategies they
    describe (:data:`DECENTRALIZED_STRATEGIES`, :data:`COMPRESSED_STRATEGIES`,
    :data:`CONSENSUS_STEP_STRATEGIES`): the table records every key for every
    run, and a parameter server's "mixing schedule" does not describe it.
    Runs that differ only in such a key are still kept apart: :func:`_prepare`
    adds the key to their label (:func:`_distinguish`), and groups by the
    columns, not by this label.

    Parameters
    ----------
    df : pandas.DataFrame
        A results table with ``strategy`` as strings (see :func:`_prepare`);
        the gossip columns may be empty or absent (an older table).

    Returns
    -------
    pandas.Series
        Strings aligned with ``df``: the strategy, then ``", "`` and each
        varying setting in the order schedule, gossip steps, compression,
        gamma, e.g. ``"decentralized"``, ``"decentralized, epidemic"``,
        ``"choco, top-k 0.1"``, ``"choco, top-k 0.1, gamma 0.5"``. A setting
        a run did not record is left out of its label.
    """
    strategy = df["strategy"].astype(str)
    decentralized = _decentralized(strategy)
    compression = _compression_tokens(_column(df, "compression"), _column(df, "compression-ratio"))
    settings = (
        (_column(df, "mixing-schedule"), decentralized),
        (_column(df, "gossip-steps").map(_gossip_steps_token), decentralized),
        (compression, strategy.isin(COMPRESSED_STRATEGIES)),
        (_column(df, "choco-gamma").map(_gamma_token), strategy.isin(CONSENSUS_STEP_STRATEGIES)),
    )
    labels = strategy.copy()
    for tokens, applies in settings:
        if tokens[applies].nunique(dropna=False) > 1:
            labels = labels + tokens.where(applies).map(lambda t: "" if _isnan(t) else f", {t}")
    return labels


def _gossip_steps_token(steps: Any) -> Any:
    """``2`` -> ``"2 gossip steps"`` (NaN stays NaN: not recorded)."""
    if _isnan(steps):
        return np.nan
    return f"{_fmt_num(steps)} gossip step{'' if float(steps) == 1 else 's'}"


def _gamma_token(gamma: Any) -> Any:
    """``0.5`` -> ``"gamma 0.5"`` (NaN stays NaN: not recorded)."""
    return np.nan if _isnan(gamma) else f"gamma {_fmt_num(gamma)}"


def _mechanism_labels(df: pd.DataFrame) -> pd.Series:
    """What each row's run sent in the exchange phase, as the mechanism figure and summary name it.

    Leakage, exposure and the membership attack are only comparable between
    runs that shared the same kind of data: raw samples, noised ones (whose
    privacy depends on the noise std) or class means (on how many images each
    averages). A run that shares nothing (share ratio 0) sent no data
    whatever its recorded mechanism, so it gets a label of its own: the
    baseline every mechanism is measured against.

    Parameters
    ----------
    df : pandas.DataFrame
        A results table; ``exchange-mechanism``, ``exchange-noise`` and
        ``mixup-size`` may be empty or absent (an older table, whose runs
        shared raw samples).

    Returns
    -------
    pandas.Series
        Strings aligned with ``df``: ``"no exchange"`` (share ratio 0),
        ``"raw"`` (also for an empty mechanism), ``"noise <exchange-noise>"``,
        ``"mixup <mixup-size>"``; the bare mechanism name where its parameter
        was not recorded, or for a mechanism this report does not know.
    """
    columns = ("exchange-mechanism", "exchange-noise", "mixup-size", "share-ratio")
    values = zip(*(_column(df, c) for c in columns))
    return pd.Series([_mechanism_label(*v) for v in values], index=df.index, dtype=object)


def _mechanism_label(mechanism: Any, noise: Any, size: Any, share: Any) -> str:
    """One run's :func:`_mechanism_labels` entry."""
    if not _isnan(share) and float(share) == 0:
        return "no exchange"
    name = "raw" if _isnan(mechanism) else str(mechanism)
    parameter = {"noise": noise, "mixup": size}.get(name, np.nan)
    return name if _isnan(parameter) else f"{name} {_fmt_num(parameter)}"


def _exchange_labels(df: pd.DataFrame) -> pd.Series:
    """What each row's mechanism sends when it sends something: :func:`_mechanism_labels` with the share ratio ignored.

    A figure's line across share ratios is one mechanism, its share-0 point
    included; only the ``mechanism`` label says ``"no exchange"`` there.
    """
    columns = ("exchange-mechanism", "exchange-noise", "mixup-size")
    values: Iterable[tuple[Any, Any, Any]] = zip(*(_column(df, c) for c in columns))
    return pd.Series([_mechanism_label(*v, np.nan) for v in values], index=df.index, dtype=object)


def _mechanism_order(labels: Iterable[str]) -> list[str]:
    """Distinct mechanism labels in report order: no exchange, raw, noise, mixup, then others; by parameter within each.

    Alphabetical order would put ``"mixup 4"`` before ``"raw"`` and
    ``"noise 0.25"`` before ``"noise 0.5"`` only by luck; this order reads
    from no sharing through raw to ever stronger privatization.
    """
    return sorted(set(labels), key=_mechanism_key)


def _mechanism_key(label: str) -> tuple[int, int, float, str]:
    """Sort key of a mechanism label: (kind rank, rank of what a share-0 run would send, numeric parameter, label)."""
    if label.startswith("no exchange"):
        inner = label[len("no exchange") :].strip(" ()")
        sub = _mechanism_key(inner) if inner else (-1, 0, -math.inf, "")
        return 0, sub[0], sub[2], label
    match = re.match(r"([^ ,]+)(?: ([^ ,]+))?", label)
    kind, parameter = (match[1], match[2]) if match else (label, None)
    try:
        value = -math.inf if parameter is None else float(parameter)
    except ValueError:
        value = math.inf
    return _MECHANISM_RANK.get(kind, len(_MECHANISM_RANK)), 0, value, label


def _compression_tokens(method: pd.Series, ratio: pd.Series) -> pd.Series:
    """``"top-k"``, ``0.1`` -> ``"top-k 0.1"``; the ratio only where it matters (:data:`RATIO_COMPRESSIONS`)."""

    def token(m: Any, r: Any) -> Any:
        if _isnan(m):
            return np.nan
        if m == "none":
            return "no compression"
        return f"{m} {_fmt_num(r)}" if m in RATIO_COMPRESSIONS and not _isnan(r) else str(m)

    return pd.Series([token(m, r) for m, r in zip(method, ratio)], index=method.index, dtype=object)


# ---------------------------------------------------------------- statistics
def _cell_labels(df: pd.DataFrame) -> pd.DataFrame:
    """One row per cell (the index): its labels, keys and config (:data:`_CELL_LABELS`), from its first row."""
    return df.drop_duplicates("cell").set_index("cell")[[c for c in _CELL_LABELS if c in df.columns]]


def _with_labels(stats: pd.DataFrame, labels: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """``stats`` (indexed by ``keys``) with the labels and config of each group's first run.

    Within a group of one configuration every label is the same; within a
    group that averages over keys (the "Per strategy" rows), the labels of
    the keys it groups by are, and the others are only the first run's.
    """
    first = labels.drop_duplicates(list(keys)).set_index(list(keys))
    first = first[[c for c in first.columns if c in _CELL_LABELS and c not in stats.columns and c != "seed"]]
    return stats.join(first).reset_index()


def _node_leakage(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (cell, node): the node's leakage and its run's labels."""
    keys = ["cell", "node"]
    leak = df.groupby(keys, sort=False, dropna=False)["leakage"].mean().rename("leakage")
    return leak.reset_index().join(_cell_labels(df), on="cell")


def _final_node_points(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (cell, node) with both a final accuracy and a leakage: the points of the trade-off figures."""
    fin = final_rows(df)[["cell", "node", "accuracy"]]
    nodes = _node_leakage(df).merge(fin, on=["cell", "node"], how="inner")
    return nodes.dropna(subset=["leakage", "accuracy"])


def _node_metrics(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (cell, node): what the privacy figures and the mechanism summary plot and average.

    Parameters
    ----------
    df : pandas.DataFrame
        A table prepared by :func:`_prepare`.

    Returns
    -------
    pandas.DataFrame
        Columns ``cell``, ``node``, the run's labels, each of
        :data:`RUN_NODE_METRICS` (the mean of the node's non-empty cells) and
        each of :data:`FINAL_NODE_METRICS` at the run's last round (NaN where
        not measured, or for ``accuracy`` where the node failed). Every node
        of every run is a row, whether or not it has the metrics.
    """
    keys = ["cell", "node"]
    run_wide = df.groupby(keys, sort=False, dropna=False)[list(RUN_NODE_METRICS)].mean().reset_index()
    final = final_rows(df).groupby(keys, sort=False, dropna=False)[list(FINAL_NODE_METRICS)].mean().reset_index()
    return run_wide.merge(final, on=keys, how="left").join(_cell_labels(df), on="cell")


def _cell_stats(df: pd.DataFrame) -> pd.DataFrame:
    """One row per cell: labels, final node-mean/min/max accuracy, mean node leakage, total gossip bytes,
    and the node means of exposed fraction, nn-distance and final membership-attack AUC.

    What every per-group statistic averages over runs; computed once per report part (the stats
    functions take it as ``cells``).
    """
    keys = ["cell", "node"]
    fin = final_rows(df)
    acc = fin.groupby("cell", sort=False)["accuracy"].agg(["mean", "min", "max"])
    acc.columns = ["acc", "acc-min", "acc-max"]
    per_node = df.groupby(keys, sort=False, dropna=False)[list(RUN_NODE_METRICS)].mean().groupby(level="cell")
    final_mia = fin.groupby(keys, sort=False, dropna=False)["mia-auc"].mean().groupby(level="cell").mean()
    out = _cell_labels(df).join(acc)
    out = out.join(per_node["leakage"].mean().rename("leakage"))
    out = out.join(per_node["leakage"].sum(min_count=1).rename("leakage-total"))
    out = out.join(df.groupby("cell", sort=False)["gossip-bytes"].sum(min_count=1).rename("gossip-bytes-total"))
    out = out.join(per_node[["exposed-fraction", "nn-distance"]].mean()).join(final_mia.rename("mia-auc"))
    return out.reset_index()


def _over_runs(g: Any, **extra: pd.Series) -> pd.DataFrame:
    """What every per-group table of runs holds: ``runs`` (cells), ``acc`` and ``acc-std`` (mean and sample std
    over runs of the run's final node-mean accuracy), ``leakage`` (mean over runs of the run's mean node
    leakage), then ``extra``; ``g`` is a groupby of :func:`_cell_stats`."""
    common = {"runs": g["cell"].nunique(), "acc": g["acc"].mean(), "acc-std": g["acc"].std(ddof=1)}
    return pd.DataFrame({**common, "leakage": g["leakage"].mean(), **extra})


def _group_stats(df: pd.DataFrame, cells: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per configuration (``config``: every varying key but the seed): the main table of ``summary.md``.

    Parameters
    ----------
    df : pandas.DataFrame
        A table prepared by :func:`_prepare`.
    cells : pandas.DataFrame, optional
        Its :func:`_cell_stats`, where the caller has them.

    Returns
    -------
    pandas.DataFrame
        The labels and config of each configuration, ``runs`` (cells),
        ``seeds`` (distinct seeds: equal to ``runs`` unless a config ran twice
        with one seed), ``acc`` and ``acc-std`` (mean and sample std over runs
        of the run's final node-mean accuracy), ``acc-min`` and ``acc-max``
        (the smallest and largest final node accuracy), ``leakage`` and
        ``leakage-total`` (mean over runs of the run's mean and summed node
        leakage), sorted by :data:`GROUP_COLUMNS`, then the other keys
        (:func:`_sort_rows`).
    """
    cells = _cell_stats(df) if cells is None else cells
    g = cells.groupby("config", sort=False)
    stats = _over_runs(
        g,
        seeds=g["seed"].nunique(),
        **{"acc-min": g["acc-min"].min(), "acc-max": g["acc-max"].max(), "leakage-total": g["leakage-total"].mean()},
    )
    return _sort_rows(_with_labels(stats, cells, ["config"]), GROUP_COLUMNS)


def _series_stats(df: pd.DataFrame, cells: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per algorithm and setting: the per-strategy comparison of ``summary.md``.

    Where the main summary holds one row per configuration, this one puts
    each algorithm's runs together over every data setting and exchange
    mechanism, so that algorithms can be compared on accuracy, leakage and
    communication at a glance. It groups by ``algorithm``: every varying key
    but the seed, the :data:`DATA_KEYS` and the :data:`EXCHANGE_KEYS`, so that
    the runs of two learning rates (or of any key the report does not name)
    are never averaged; :func:`_averaged_over` says what it averages over.

    Parameters
    ----------
    df : pandas.DataFrame
        A table prepared by :func:`_prepare`.
    cells : pandas.DataFrame, optional
        Its :func:`_cell_stats`, where the caller has them.

    Returns
    -------
    pandas.DataFrame
        Columns ``series``, ``model``, ``setting`` (and the other labels),
        ``runs`` (cells), ``acc`` and ``acc-std`` (mean and sample std over
        runs of the run's final node-mean accuracy), ``leakage`` (mean over
        runs of the run's mean node leakage) and ``gossip-bytes`` (mean over
        runs of the run's sum of ``gossip-bytes`` over nodes and rounds; runs
        without any are left out, NaN when none has any), sorted by strategy,
        model, then the other keys.
    """
    cells = _cell_stats(df) if cells is None else cells
    g = cells.groupby("algorithm", sort=False)
    stats = _over_runs(g, **{"gossip-bytes": g["gossip-bytes-total"].mean()})
    return _sort_rows(_with_labels(stats, cells, ["algorithm"]), ["strategy", "model"])


def _mechanism_stats(df: pd.DataFrame, cells: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per algorithm, setting and mechanism: the "Per exchange mechanism" table of ``summary.md``.

    What a mechanism buys is read off against raw sharing of the same
    algorithm: how much accuracy it keeps, and how much less it leaks by the
    KL measure, by exposed sample ids, by nearness to the sender's images and
    to a membership attack. Keeping the series apart stops one algorithm's
    accuracy from passing for a mechanism's. It groups by ``line`` (every
    varying key but the seed and the :data:`DATA_KEYS`) and ``mechanism``;
    :func:`_averaged_over` says what it averages over.

    Parameters
    ----------
    df : pandas.DataFrame
        A table prepared by :func:`_prepare`.
    cells : pandas.DataFrame, optional
        Its :func:`_cell_stats`, where the caller has them.

    Returns
    -------
    pandas.DataFrame
        Columns ``series``, ``model``, ``mechanism`` (``"no exchange"`` at share
        ratio 0, see :func:`_run_labels`), ``setting``, ``runs`` (cells),
        ``acc`` and ``acc-std`` (mean and sample std over runs of the run's
        final node-mean accuracy), and ``leakage``, ``exposed-fraction``,
        ``nn-distance``, ``mia-auc``: each the mean over runs of the run's
        node mean (``mia-auc`` at the last round), runs without the metric
        left out, NaN when none has it. Sorted by strategy, model, the series
        keys, then mechanism in :func:`_mechanism_order`.
    """
    cells = _cell_stats(df) if cells is None else cells
    keys = ["line", "mechanism"]
    g = cells.groupby(keys, sort=False)
    stats = _over_runs(g, **{c: g[c].mean() for c in ("exposed-fraction", "nn-distance", "mia-auc")})
    return _sort_rows(_with_labels(stats, cells, keys), ["strategy", "model"])


def _mechanism_means(df: pd.DataFrame, cells: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per (mechanism, model): mean final accuracy and mean leakage over the runs that have both.

    The large markers of ``accuracy-vs-leakage-by-mechanism``: where each
    mechanism sits on the privacy/accuracy map on average, whatever the
    algorithm, so that raw and privatized sharing can be compared at a glance.
    This averages over every other varying key by design; the figure names
    them (:func:`_averaged_over` by ``mechanism`` and ``model``).

    Parameters
    ----------
    df : pandas.DataFrame
        A table prepared by :func:`_prepare`.
    cells : pandas.DataFrame, optional
        Its :func:`_cell_stats`, where the caller has them.

    Returns
    -------
    pandas.DataFrame
        Columns ``mechanism``, ``model``, ``runs``, ``acc`` (mean over runs of
        the run's final node-mean accuracy) and ``leakage`` (mean over runs of
        the run's mean node leakage), sorted by mechanism
        (:func:`_mechanism_order`) then model; runs without an accuracy or a
        leakage are left out.
    """
    cells = (_cell_stats(df) if cells is None else cells).dropna(subset=["acc", "leakage"])
    g = cells.groupby(["mechanism", "model"], dropna=False, sort=False)
    out = pd.DataFrame({"runs": g["cell"].nunique(), "acc": g["acc"].mean(), "leakage": g["leakage"].mean()})
    return _sort_by_mechanism(out.reset_index(), [], then=["model"])


def _sort_by_mechanism(df: pd.DataFrame, first: Sequence[str], then: Sequence[str] = ()) -> pd.DataFrame:
    """Sort by ``first``, then ``mechanism`` in :func:`_mechanism_order`, then ``then``."""
    rank = {m: i for i, m in enumerate(_mechanism_order(df["mechanism"]))}
    out = df.assign(_rank=df["mechanism"].map(rank))
    return _sort(out, [*first, "_rank", *then]).drop(columns="_rank")


def _sort_rows(df: pd.DataFrame, first: Sequence[str], then: Sequence[str] = ()) -> pd.DataFrame:
    """Sort groups by ``first``, the :data:`SERIES_KEYS`, the mechanism (in :func:`_mechanism_order`), every
    other config column (by value: ``batch-size 64`` before ``128``), then ``then``."""
    rank = {m: i for i, m in enumerate(_mechanism_order(df["mechanism"]))} if "mechanism" in df.columns else {}
    out = df.assign(_rank=df["mechanism"].map(rank) if rank else 0)
    rest = [c for c in (*SERIES_KEYS, "_rank", *CONFIG_COLUMNS) if c in out.columns and c != "seed"]
    keys = list(dict.fromkeys([*first, *rest, *then]))
    return _sort(out, keys).drop(columns="_rank")


def _run_byte_curves(df: pd.DataFrame) -> pd.DataFrame:
    """Per run and round: the gossip bytes a node has sent so far and the accuracy.

    Rounds are what a run costs in compute, bytes what it costs in
    communication; algorithms that gossip more (more steps, denser schedules)
    or less (compression) are only compared fairly against the bytes.

    Parameters
    ----------
    df : pandas.DataFrame
        A table prepared by :func:`_prepare`.

    Returns
    -------
    pandas.DataFrame
        One row per (cell, round) with a round, columns ``cell``, ``round``,
        ``gossip-bytes`` (the mean over the run's nodes of each node's
        ``gossip-bytes`` summed over rounds up to this one) and ``acc`` (the
        mean accuracy over the run's nodes at this round, failed node-rounds
        left out). In a run that recorded ``gossip-bytes`` at all, an empty
        cell counts as 0 bytes; in a run that recorded none, ``gossip-bytes``
        is NaN.
    """
    d = df[df["round"].notna()].sort_values(["cell", "node", "round"], kind="stable")
    sent = d["gossip-bytes"]
    measured = sent.notna().groupby(d["cell"]).transform("any")
    cumulative = sent.fillna(0.0).groupby([d["cell"], d["node"]]).cumsum().where(measured)
    per_round = pd.DataFrame({"cell": d["cell"], "round": d["round"], "gossip-bytes": cumulative, "acc": d["accuracy"]})
    return per_round.groupby(["cell", "round"], sort=True)[["gossip-bytes", "acc"]].mean().reset_index()


def _byte_curves(df: pd.DataFrame) -> pd.DataFrame:
    """Per configuration and round: :func:`_run_byte_curves` averaged over the configuration's runs (its seeds).

    Parameters
    ----------
    df : pandas.DataFrame
        A table prepared by :func:`_prepare`.

    Returns
    -------
    pandas.DataFrame
        The labels and config of each configuration (``series``, ``model``,
        ``digits-per-node``, ``share-ratio``, ``line``, ``line-label``, ...),
        ``round``, ``gossip-bytes`` and ``acc`` (each the mean over the
        configuration's runs that have it at that round), sorted by the keys
        then round.
    """
    labels = _cell_labels(df)
    runs = _run_byte_curves(df).join(labels["config"], on="cell")
    keys = ["config", "round"]
    means = runs.groupby(keys, sort=False)[["gossip-bytes", "acc"]].mean()
    first = labels.drop_duplicates("config").set_index("config")
    out = means.reset_index().join(first[[c for c in first.columns if c != "seed"]], on="config")
    return _sort_rows(out, GROUP_COLUMNS, then=["round"])


def _leakage_stats(df: pd.DataFrame) -> pd.DataFrame:
    """Node leakage per configuration: mean, min and max over its nodes and runs (seeds), with its labels."""
    nodes = _node_leakage(df).dropna(subset=["leakage"])
    stats = nodes.groupby("config", sort=False)["leakage"].agg(["mean", "min", "max"])
    return _sort_rows(_with_labels(stats, nodes, ["config"]), GROUP_COLUMNS)


def _sort(df: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    return df.sort_values(list(keys), na_position="last", kind="stable").reset_index(drop=True)


def _uniques(values: Iterable[Any]) -> list[Any]:
    """Distinct values, sorted, NaN last (once)."""
    if isinstance(values, pd.Series):
        values = values.drop_duplicates()
    seen: list[Any] = []
    has_nan = False
    for v in values:
        if _isnan(v):
            has_nan = True
        elif v not in seen:
            seen.append(v)
    return sorted(seen) + ([np.nan] if has_nan else [])


def _isnan(v: Any) -> bool:
    return v is None or (isinstance(v, (float, np.floating)) and math.isnan(v))


def _match(series: pd.Series, value: Any) -> pd.Series:
    return series.isna() if _isnan(value) else series == value


# ---------------------------------------------------------------- formatting
def _fmt_num(v: Any) -> str:
    if _isnan(v):
        return _NA
    v = float(v)
    return str(int(v)) if v.is_integer() else f"{v:g}"


def _fmt_value(v: Any) -> str:
    """A config value as labels print it: ``"n/a"``, an integer, a number to 12 digits, or the text."""
    if _isnan(v):
        return _NA
    if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_)):
        v = float(v)
        return str(int(v)) if v.is_integer() else f"{v:.12g}"
    return str(v)


def _fmt_pct(v: Any) -> str:
    return _NA if _isnan(v) else f"{100 * float(v):.2f}%"


def _fmt_leak(v: Any) -> str:
    return _NA if _isnan(v) else f"{float(v):.4f}"


def _fmt_dec(v: Any) -> str:
    """Four decimals (``"0.5123"``), for distances and AUCs."""
    return _NA if _isnan(v) else f"{float(v):.4f}"


def _fmt_acc(mean: Any, std: Any, runs: Any) -> str:
    """``"85.00% ± 1.20%"``; just the mean for a single run (a std over one run is no spread)."""
    text = _fmt_pct(mean)
    if runs > 1 and not _isnan(std):
        text += f" ± {_fmt_pct(std)}"
    return text


_BYTE_UNITS = (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3))


def _fmt_bytes(v: Any) -> str:
    """Decimal units, two decimals (``"2.40 MB"``); whole bytes below 1 kB."""
    if _isnan(v):
        return _NA
    v = float(v)
    for name, size in _BYTE_UNITS:
        if abs(v) >= size:
            return f"{v / size:.2f} {name}"
    return f"{v:.0f} B"


def _strategy_label(name: str) -> str:
    if name == _NA:
        return name
    return f"{name} (DE)" if name in DECENTRALIZED_STRATEGIES or registry.is_import_path(name) else f"{name} (PS)"
