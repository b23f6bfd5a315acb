"""The labels and keys of a results table's runs: what configuration a row belongs to, and what it is called.

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

import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from flower_dl import registry
from flower_dl.report.table import (
    _MECHANISM_RANK,
    COMPRESSED_STRATEGIES,
    CONSENSUS_STEP_STRATEGIES,
    DATA_KEYS,
    DECENTRALIZED_STRATEGIES,
    EXCHANGE_KEYS,
    GROUP_COLUMNS,
    RATIO_COMPRESSIONS,
    SERIES_KEYS,
    SETTING_KEYS,
    _decentralized,
    varying_keys,
)
from flower_dl.report.values import _NA, _column, _fmt_num, _fmt_value, _isnan
from flower_dl.results.columns import CONFIG_COLUMNS

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


def _strategy_label(name: str) -> str:
    if name == _NA:
        return name
    return f"{name} (DE)" if name in DECENTRALIZED_STRATEGIES or registry.is_import_path(name) else f"{name} (PS)"
