"""The results table of :mod:`flower_dl.report`: reading it, its statistics, number formatting.

:func:`read_table` reads and checks a sweep's table; :func:`final_rows` and
:func:`pareto_front` are public helpers; the ``_*_stats`` functions compute the
per-run, per-group and per-node statistics every figure and the summary share,
following the accuracy and leakage conventions of :mod:`flower_dl.report`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flower_dl.sweep import CONFIG_COLUMNS as SWEEP_CONFIG_COLUMNS  # the table sweeps write
from flower_dl.sweep import TABLE_COLUMNS, TEXT_COLUMNS

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

CONFIG_COLUMNS: tuple[str, ...] = tuple(
    c for c in SWEEP_CONFIG_COLUMNS if c not in ("cell", "seed", "strategy", "model", "digits-per-node", "share-ratio")
)
"""Config columns that are not part of a summary group; the summary notes when
they vary (the groups then average over them; the "Per strategy" table keeps
the gossip settings apart, see :func:`_series_labels`, and the "Per exchange
mechanism" table the exchange settings, see :func:`_mechanism_labels`)."""

GROUP_COLUMNS: tuple[str, ...] = ("strategy", "model", "digits-per-node", "share-ratio")
"""One row of ``summary.md`` per combination of these."""

DECENTRALIZED_STRATEGIES: tuple[str, ...] = ("decentralized", "gradient-tracking", "choco")
"""Strategies that gossip, so that ``mixing-schedule`` and ``gossip-steps`` describe
them (the table records those keys for every run, parameter-server ones too).
The keys of ``flower_dl.strategies.DECENTRALIZED_KWARGS``, repeated here because
importing that module needs Flower."""

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

FINAL_NODE_METRICS: tuple[str, ...] = ("accuracy", "mia-auc", "mia-tpr-1fpr")
"""Metric columns measured per node and evaluated round, taken at each run's
last round (the membership attack runs on the model that is evaluated)."""

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
        The table; its suffix picks the reader (``.xlsx`` needs openpyxl).

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
    suffix = path.suffix.lower()
    if suffix == ".csv":
        df = pd.read_csv(path, dtype=str)
    elif suffix == ".xlsx":
        try:
            df = pd.read_excel(path, dtype=object)
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(f"{where}: reading .xlsx needs openpyxl (pip install openpyxl)") from exc
    else:
        raise ValueError(f"{where}: unsupported format {path.suffix!r} (expected .csv or .xlsx)")

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


# ---------------------------------------------------------------- statistics
_CELL_LABELS: tuple[str, ...] = (*GROUP_COLUMNS, "seed", "series", "mechanism")
"""A run's labels, carried into every per-run and per-node statistic."""


def _prepare(df: pd.DataFrame) -> pd.DataFrame:
    """Strings for missing labels; failed node-rounds lose their accuracy; add ``series``
    (:func:`_series_labels`) and ``mechanism`` (:func:`_mechanism_labels`)."""
    out = df.copy()
    for col in ("strategy", "model"):
        out[col] = out[col].fillna(_NA).astype(str)
    out.loc[out["failed"].astype(bool), "accuracy"] = np.nan
    out["series"] = _series_labels(out)
    out["mechanism"] = _mechanism_labels(out)
    return out


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
    run, and a parameter server's "mixing schedule" would only split it for
    nothing.

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
    decentralized = strategy.isin(DECENTRALIZED_STRATEGIES)
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


def _mechanism_order(labels: Iterable[str]) -> list[str]:
    """Distinct mechanism labels in report order: no exchange, raw, noise, mixup, then others; by parameter within each.

    Alphabetical order would put ``"mixup 4"`` before ``"raw"`` and
    ``"noise 0.25"`` before ``"noise 0.5"`` only by luck; this order reads
    from no sharing through raw to ever stronger privatization.
    """
    return sorted(set(labels), key=_mechanism_key)


def _mechanism_key(label: str) -> tuple[int, float, str]:
    """Sort key of a mechanism label: (kind rank, numeric parameter, label)."""
    if label in _MECHANISM_RANK:
        return _MECHANISM_RANK[label], -math.inf, label
    kind, _, parameter = label.partition(" ")
    try:
        value = float(parameter)
    except ValueError:
        value = math.inf
    return _MECHANISM_RANK.get(kind, len(_MECHANISM_RANK)), value, label


def _compression_tokens(method: pd.Series, ratio: pd.Series) -> pd.Series:
    """``"top-k"``, ``0.1`` -> ``"top-k 0.1"``; the ratio only where it matters (:data:`RATIO_COMPRESSIONS`)."""

    def token(m: Any, r: Any) -> Any:
        if _isnan(m):
            return np.nan
        if m == "none":
            return "no compression"
        return f"{m} {_fmt_num(r)}" if m in RATIO_COMPRESSIONS and not _isnan(r) else str(m)

    return pd.Series([token(m, r) for m, r in zip(method, ratio)], index=method.index, dtype=object)


def _node_leakage(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (cell, node): the node's leakage and its run's labels."""
    keys = ["cell", "node"]
    leak = df.groupby(keys, sort=False, dropna=False)["leakage"].mean().rename("leakage")
    labels = df.groupby("cell", sort=False)[list(_CELL_LABELS)].first()
    return leak.reset_index().join(labels, on="cell")


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
    labels = df.groupby("cell", sort=False)[list(_CELL_LABELS)].first()
    return run_wide.merge(final, on=keys, how="left").join(labels, on="cell")


def _cell_stats(df: pd.DataFrame) -> pd.DataFrame:
    """One row per cell: labels, final node-mean/min/max accuracy, mean node leakage, total gossip bytes,
    and the node means of exposed fraction, nn-distance and final membership-attack AUC."""
    fin = final_rows(df)
    labels = df.groupby("cell", sort=False)[list(_CELL_LABELS)].first()
    acc = fin.groupby("cell", sort=False)["accuracy"].agg(["mean", "min", "max"])
    acc.columns = ["acc", "acc-min", "acc-max"]
    node_leak = _node_leakage(df).groupby("cell", sort=False)["leakage"]
    out = labels.join(acc).join(node_leak.mean().rename("leakage"))
    out = out.join(node_leak.sum(min_count=1).rename("leakage-total"))
    out = out.join(df.groupby("cell", sort=False)["gossip-bytes"].sum(min_count=1).rename("gossip-bytes-total"))
    privacy = ["exposed-fraction", "nn-distance", "mia-auc"]
    out = out.join(_node_metrics(df).groupby("cell", sort=False)[privacy].mean())
    return out.reset_index()


def _group_stats(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (strategy, model, digits-per-node, share-ratio) group."""
    cells = _cell_stats(df)
    keys = list(GROUP_COLUMNS)
    g = cells.groupby(keys, dropna=False, sort=False)
    out = pd.DataFrame(
        {
            "runs": g["cell"].nunique(),
            "seeds": g["seed"].nunique(),
            "acc": g["acc"].mean(),
            "acc-std": g["acc"].std(ddof=1),
            "acc-min": g["acc-min"].min(),
            "acc-max": g["acc-max"].max(),
            "leakage": g["leakage"].mean(),
            "leakage-total": g["leakage-total"].mean(),
        }
    ).reset_index()
    return _sort(out, keys)


def _series_stats(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (series, model): the per-strategy comparison of ``summary.md``.

    Where the main summary holds one row per data setting, this one puts each
    algorithm's runs together over every digits-per-node and share ratio, so
    that algorithms can be compared on accuracy, leakage and communication at
    a glance.

    Parameters
    ----------
    df : pandas.DataFrame
        A table prepared by :func:`_prepare`.

    Returns
    -------
    pandas.DataFrame
        Columns ``series``, ``model``, ``runs`` (cells), ``acc`` and
        ``acc-std`` (mean and sample std over runs of the run's final
        node-mean accuracy), ``leakage`` (mean over runs of the run's mean
        node leakage) and ``gossip-bytes`` (mean over runs of the run's sum of
        ``gossip-bytes`` over nodes and rounds; runs without any are left
        out, NaN when none has any), sorted by series then model.
    """
    cells = _cell_stats(df)
    keys = ["series", "model"]
    g = cells.groupby(keys, dropna=False, sort=False)
    out = pd.DataFrame(
        {
            "runs": g["cell"].nunique(),
            "acc": g["acc"].mean(),
            "acc-std": g["acc"].std(ddof=1),
            "leakage": g["leakage"].mean(),
            "gossip-bytes": g["gossip-bytes-total"].mean(),
        }
    ).reset_index()
    return _sort(out, keys)


def _mechanism_stats(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (series, model, mechanism): the "Per exchange mechanism" table of ``summary.md``.

    What a mechanism buys is read off against raw sharing of the same
    algorithm: how much accuracy it keeps, and how much less it leaks by the
    KL measure, by exposed sample ids, by nearness to the sender's images and
    to a membership attack. Keeping the series apart stops one algorithm's
    accuracy from passing for a mechanism's.

    Parameters
    ----------
    df : pandas.DataFrame
        A table prepared by :func:`_prepare`.

    Returns
    -------
    pandas.DataFrame
        Columns ``series``, ``model``, ``mechanism`` (:func:`_mechanism_labels`),
        ``runs`` (cells), ``acc`` and ``acc-std`` (mean and sample std over
        runs of the run's final node-mean accuracy), and ``leakage``,
        ``exposed-fraction``, ``nn-distance``, ``mia-auc``: each the mean over
        runs of the run's node mean (``mia-auc`` at the last round), runs
        without the metric left out, NaN when none has it. Sorted by series,
        model, then mechanism in :func:`_mechanism_order`.
    """
    cells = _cell_stats(df)
    keys = ["series", "model", "mechanism"]
    g = cells.groupby(keys, dropna=False, sort=False)
    out = pd.DataFrame(
        {
            "runs": g["cell"].nunique(),
            "acc": g["acc"].mean(),
            "acc-std": g["acc"].std(ddof=1),
            "leakage": g["leakage"].mean(),
            "exposed-fraction": g["exposed-fraction"].mean(),
            "nn-distance": g["nn-distance"].mean(),
            "mia-auc": g["mia-auc"].mean(),
        }
    ).reset_index()
    return _sort_by_mechanism(out, ["series", "model"])


def _mechanism_means(df: pd.DataFrame) -> pd.DataFrame:
    """Per (mechanism, model): mean final accuracy and mean leakage over the runs that have both.

    The large markers of ``accuracy-vs-leakage-by-mechanism``: where each
    mechanism sits on the privacy/accuracy map on average, whatever the
    algorithm, so that raw and privatized sharing can be compared at a glance.

    Parameters
    ----------
    df : pandas.DataFrame
        A table prepared by :func:`_prepare`.

    Returns
    -------
    pandas.DataFrame
        Columns ``mechanism``, ``model``, ``runs``, ``acc`` (mean over runs of
        the run's final node-mean accuracy) and ``leakage`` (mean over runs of
        the run's mean node leakage), sorted by mechanism
        (:func:`_mechanism_order`) then model; runs without an accuracy or a
        leakage are left out.
    """
    cells = _cell_stats(df).dropna(subset=["acc", "leakage"])
    g = cells.groupby(["mechanism", "model"], dropna=False, sort=False)
    out = pd.DataFrame({"runs": g["cell"].nunique(), "acc": g["acc"].mean(), "leakage": g["leakage"].mean()})
    return _sort_by_mechanism(out.reset_index(), [], then=["model"])


def _sort_by_mechanism(df: pd.DataFrame, first: Sequence[str], then: Sequence[str] = ()) -> pd.DataFrame:
    """Sort by ``first``, then ``mechanism`` in :func:`_mechanism_order`, then ``then``."""
    rank = {m: i for i, m in enumerate(_mechanism_order(df["mechanism"]))}
    out = df.assign(_rank=df["mechanism"].map(rank))
    return _sort(out, [*first, "_rank", *then]).drop(columns="_rank")


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
    """Per (series, model, digits-per-node, share-ratio) group and round: :func:`_run_byte_curves` averaged over runs.

    Parameters
    ----------
    df : pandas.DataFrame
        A table prepared by :func:`_prepare`.

    Returns
    -------
    pandas.DataFrame
        Columns ``series``, ``model``, ``digits-per-node``, ``share-ratio``,
        ``round``, ``gossip-bytes`` and ``acc`` (each the mean over the
        group's runs that have it at that round), sorted by the keys.
    """
    runs = _run_byte_curves(df)
    keys = ["series", "model", "digits-per-node", "share-ratio"]
    labels = df.groupby("cell", sort=False)[keys].first()
    runs = runs.join(labels, on="cell")
    out = runs.groupby([*keys, "round"], dropna=False, sort=False)[["gossip-bytes", "acc"]].mean().reset_index()
    return _sort(out, [*keys, "round"])


def _leakage_stats(df: pd.DataFrame) -> pd.DataFrame:
    """Node leakage per (digits-per-node, share-ratio): mean, min, max over nodes and runs."""
    nodes = _node_leakage(df).dropna(subset=["leakage"])
    keys = ["digits-per-node", "share-ratio"]
    out = nodes.groupby(keys, dropna=False, sort=False)["leakage"].agg(["mean", "min", "max"]).reset_index()
    return _sort(out, keys)


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
    return f"{name} (DE)" if name in DECENTRALIZED_STRATEGIES else f"{name} (PS)"
