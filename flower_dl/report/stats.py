"""The statistics every figure and ``summary.md`` share: per run, per configuration, per node and per exchange mechanism.

They follow the accuracy and leakage conventions of :mod:`flower_dl.report`
and group as :mod:`flower_dl.report.labels` says: only seeds are averaged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from flower_dl.report.labels import _CELL_LABELS, _mechanism_order
from flower_dl.report.table import (
    FINAL_NODE_METRICS,
    GROUP_COLUMNS,
    RUN_NODE_METRICS,
    SERIES_KEYS,
    final_rows,
)
from flower_dl.report.values import _sort
from flower_dl.results.columns import CONFIG_COLUMNS


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
