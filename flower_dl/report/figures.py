"""The figures of :mod:`flower_dl.report`, and :data:`FIGURE_MAKERS`, the list of them.

A figure is a function ``_fig_<name>(t: Tables) -> matplotlib.figure.Figure``
whose docstring says what it shows; :data:`FIGURE_MAKERS` maps each figure's
base name (its file is ``<base>.<format>``) to that function, in the order
:func:`flower_dl.report.write_report` writes them and ``summary.md`` links them.
To add a figure: write the function (with the helpers of
:mod:`flower_dl.report.drawing`) and add one entry to :data:`FIGURE_MAKERS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from flower_dl.report.drawing import (
    _MARKERS,
    _accuracy_lines,
    _errorbar,
    _figure,
    _integer_axis,
    _legend,
    _line_label,
    _line_styles,
    _no_data,
    _percent_axis,
    _series_colours,
    _series_line_label,
    _strategy_colours,
)
from flower_dl.report.table import (
    _NA,
    _byte_curves,
    _final_node_points,
    _fmt_num,
    _group_stats,
    _leakage_stats,
    _match,
    _mechanism_means,
    _mechanism_order,
    _node_metrics,
    _prepare,
    _strategy_label,
    _uniques,
    pareto_front,
)

MAX_LINES = 6
"""Most lines per panel of ``learning-curves`` (more groups are merged or thinned)."""


@dataclass(frozen=True)
class Tables:
    """What every figure is drawn from, computed once per report.

    Attributes
    ----------
    data : pandas.DataFrame
        The results table as :func:`flower_dl.report.read_table` returns it,
        with missing ``strategy``/``model`` labels as ``"n/a"``, the accuracy
        of failed node-rounds removed, a ``series`` column, each run's
        algorithm (:func:`flower_dl.report.table._series_labels`), and a
        ``mechanism`` column, what it sent in the exchange
        (:func:`flower_dl.report.table._mechanism_labels`).
    groups : pandas.DataFrame
        One row per (strategy, model, digits-per-node, share-ratio) group: runs,
        seeds, final accuracy (mean, std, min and max node), mean and total
        node leakage.
    leakage : pandas.DataFrame
        Node leakage per (digits-per-node, share-ratio): mean, min and max over
        nodes and runs.
    curves : pandas.DataFrame
        Per (series, model, digits-per-node, share-ratio) group and round: the
        cumulative gossip bytes per node and the accuracy, each averaged over
        the group's runs (:func:`flower_dl.report.table._byte_curves`).
    nodes : pandas.DataFrame
        One row per (cell, node): the run's labels, the node's leakage,
        exposed fraction and nn-distance, and its final accuracy and
        membership-attack AUC (:func:`flower_dl.report.table._node_metrics`).
    """

    data: pd.DataFrame
    groups: pd.DataFrame
    leakage: pd.DataFrame
    curves: pd.DataFrame
    nodes: pd.DataFrame

    @classmethod
    def of(cls, df: pd.DataFrame) -> Tables:
        """The tables of a results table read by :func:`flower_dl.report.read_table`."""
        data = _prepare(df)
        return cls(
            data=data,
            groups=_group_stats(data),
            leakage=_leakage_stats(data),
            curves=_byte_curves(data),
            nodes=_node_metrics(data),
        )


def _fig_accuracy_vs_share_ratio(t: Tables) -> Any:
    """Final accuracy vs share ratio, a line per strategy, a panel per digits-per-node (line style: model)."""
    df, groups = t.data, t.groups
    strategies, colours, models, styles = _line_styles(df)
    ks = _uniques(groups["digits-per-node"])
    fig, axes = _figure(len(ks), sharey=True)
    for ax, k in zip(axes, ks):
        sub = groups[_match(groups["digits-per-node"], k)]
        _accuracy_lines(ax, sub, "share-ratio", strategies, colours, models, styles)
        if not ax.has_data():
            _no_data(ax, "no final accuracy with a share ratio")
        ax.set_title(f"{_fmt_num(k)} digits per node", fontsize=10)
        ax.set_xlabel("share ratio")
        ax.set_ylabel("final accuracy")
        _percent_axis(ax)
        ax.grid(alpha=0.3)
    fig.suptitle(
        "Final-round accuracy vs share ratio\n(mean over nodes and seeds; bars: min-max node accuracy)", fontsize=11
    )
    _legend(fig, axes, "strategy")
    return fig


def _fig_accuracy_vs_digits(t: Tables) -> Any:
    """Final accuracy vs digits-per-node at share ratio 0 (or the smallest one present)."""
    df, groups = t.data, t.groups
    strategies, colours, models, styles = _line_styles(df)
    shares = groups["share-ratio"]
    zero = np.isclose(shares.to_numpy(dtype=float), 0.0)
    if zero.any():
        sub = groups[zero]
        where = "at share ratio 0"
    elif shares.notna().any():
        smallest = float(shares.min())
        sub = groups[np.isclose(shares.to_numpy(dtype=float), smallest)]
        where = f"at share ratio {_fmt_num(smallest)} (no share-ratio-0 runs: smallest present)"
    else:
        sub = groups
        where = "(share ratio not recorded)"
    fig, (ax,) = _figure(1, legend_width=2.4, panel=(5.5, 3.8))
    _accuracy_lines(ax, sub, "digits-per-node", strategies, colours, models, styles)
    if not ax.has_data():
        _no_data(ax, "no final accuracy with a digits-per-node")
    ax.set_xlabel("digits per node")
    ax.set_ylabel("final accuracy")
    _percent_axis(ax)
    _integer_axis(ax)
    ax.grid(alpha=0.3)
    ax.set_title(
        f"Final-round accuracy vs digits per node\n{where}\n(mean over nodes and seeds; bars: min-max node accuracy)",
        fontsize=10,
    )
    _legend(fig, [ax], "strategy")
    return fig


def _fig_leakage_vs(t: Tables, x: str, line: str) -> Any:
    """Mean node leakage vs ``x``, one line per value of ``line`` (min-max bars)."""
    leak = t.leakage
    names = {"digits-per-node": "digits per node", "share-ratio": "share ratio"}
    values = _uniques(leak[line]) if not leak.empty else []
    fig, (ax,) = _figure(1, legend_width=2.0, panel=(5.5, 3.8))
    for colour, v in zip(_series_colours(len(values)), values):
        g = leak[_match(leak[line], v)]
        _errorbar(ax, g[x], g["mean"], g["min"], g["max"], color=colour, label=_fmt_num(v))
    if not ax.has_data():
        _no_data(ax, "no leakage recorded")
    ax.set_xlabel(names[x])
    ax.set_ylabel("mean node leakage")
    if x == "digits-per-node":
        _integer_axis(ax)
    ax.grid(alpha=0.3)
    ax.set_title(f"Node leakage vs {names[x]}\n(mean over nodes and seeds; bars: min-max node)", fontsize=10)
    _legend(fig, [ax], names[line])
    return fig


def _fig_accuracy_vs_leakage(t: Tables) -> Any:
    """Per-node final accuracy vs that node's leakage, with the Pareto front of the trade-off."""
    df = t.data
    strategies, colours, models, _ = _line_styles(df)
    markers = {m: _MARKERS[i % len(_MARKERS)] for i, m in enumerate(models)}
    nodes = _final_node_points(df)
    fig, (ax,) = _figure(1, legend_width=2.4, panel=(5.5, 4.0))
    for s in strategies:
        for m in models:
            g = nodes[(nodes["strategy"] == s) & (nodes["model"] == m)]
            if g.empty:
                continue
            ax.scatter(
                g["leakage"],
                g["accuracy"],
                s=18,
                alpha=0.6,
                color=colours[s],
                marker=markers[m],
                label=_line_label(s, m, models),
                edgecolors="none",
            )
    if not nodes.empty:
        pts = nodes[["leakage", "accuracy"]].to_numpy(dtype=float)
        front = pts[pareto_front(pts)]
        ax.step(front[:, 0], front[:, 1], where="post", color="black", linewidth=1.2, label="Pareto front")
        ax.scatter(front[:, 0], front[:, 1], s=36, facecolors="none", edgecolors="black", linewidths=1)
    title = (
        f"Per-node final accuracy vs leakage ({len(nodes)} nodes, "
        f"{nodes['cell'].nunique()} runs)\nPareto front: lower leakage, higher accuracy"
    )
    return _finish_leakage_axes(fig, ax, nodes, title, "strategy")


def _finish_leakage_axes(fig: Any, ax: Any, nodes: Any, title: str, legend_title: str) -> Any:
    """The axes every accuracy-vs-leakage figure shares: labels, grid, title, legend (a note when ``nodes`` is empty)."""
    if nodes.empty:
        _no_data(ax, "no node with both a final accuracy and a leakage")
    ax.set_xlabel("node leakage")
    ax.set_ylabel("node final accuracy")
    _percent_axis(ax)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=10)
    _legend(fig, [ax], legend_title)
    return fig


def _fig_pareto_by_strategy(t: Tables) -> Any:
    """Per-node final accuracy vs leakage with one Pareto front per strategy (series label).

    The single front of ``accuracy-vs-leakage`` shows the best trade-off of
    the whole sweep, but not what each algorithm can reach on its own: here
    each series (its strategy, plus the gossip settings that vary in the table)
    has its own front, in its colour, over its nodes (faint points), so the
    fronts can be compared; markers and line styles tell models apart.
    """
    df = t.data
    series, colours, models, styles = _line_styles(df, by="series")
    markers = {m: _MARKERS[i % len(_MARKERS)] for i, m in enumerate(models)}
    nodes = _final_node_points(df)
    fig, (ax,) = _figure(1, legend_width=2.8, panel=(5.5, 4.0))
    for s in series:
        for m in models:
            g = nodes[(nodes["series"] == s) & (nodes["model"] == m)]
            if g.empty:
                continue
            pts = g[["leakage", "accuracy"]].to_numpy(dtype=float)
            ax.scatter(pts[:, 0], pts[:, 1], s=14, alpha=0.3, color=colours[s], marker=markers[m], edgecolors="none")
            front = pts[pareto_front(pts)]
            ax.step(
                front[:, 0],
                front[:, 1],
                where="post",
                color=colours[s],
                linestyle=styles[m],
                linewidth=1.4,
                marker=markers[m],
                markersize=5,
                label=_series_line_label(s, m, models),
            )
    title = (
        "Pareto front of final accuracy vs leakage per strategy\n"
        "(faint points: nodes; lines: each strategy's non-dominated nodes)"
    )
    return _finish_leakage_axes(fig, ax, nodes, title, "strategy")


def _data_panels(groups: pd.DataFrame) -> list[tuple[Any, Any]]:
    """The (digits-per-node, share-ratio) pairs present, sorted: one panel each."""
    ks, shares = _uniques(groups["digits-per-node"]), _uniques(groups["share-ratio"])
    present = [
        (k, s)
        for k in ks
        for s in shares
        if (_match(groups["digits-per-node"], k) & _match(groups["share-ratio"], s)).any()
    ]
    return present or [(np.nan, np.nan)]


def _fig_accuracy_vs_gossip_bytes(t: Tables) -> Any:
    """Accuracy vs cumulative gossip bytes per node, a line per strategy (series label), a panel per data setting.

    Rounds measure compute; bytes measure communication, where decentralized
    algorithms differ most (gossip steps, schedules, compression). Each point
    is a round: x the bytes a node has sent up to it (mean over nodes, then
    over runs), y the mean accuracy (over nodes, then runs). Log-scale x, so
    points with no bytes are not drawn; groups without ``gossip-bytes`` (an
    older table, or one that did not measure it) are left out, and a panel
    without any says so. One panel per (digits-per-node, share-ratio) pair.
    """
    series, colours, models, styles = _line_styles(t.data, by="series")
    curves = t.curves.dropna(subset=["gossip-bytes", "acc"])
    curves = curves[curves["gossip-bytes"] > 0]
    any_bytes = t.data["gossip-bytes"].notna().any()
    panels = _data_panels(t.groups)
    fig, axes = _figure(len(panels), sharey=True, legend_width=2.8)
    for ax, (k, share) in zip(axes, panels):
        sub = curves[_match(curves["digits-per-node"], k) & _match(curves["share-ratio"], share)]
        for s in series:
            for m in models:
                g = sub[(sub["series"] == s) & (sub["model"] == m)]
                if g.empty:
                    continue
                ax.plot(
                    g["gossip-bytes"],
                    g["acc"],
                    color=colours[s],
                    linestyle=styles[m],
                    marker="o",
                    markersize=3,
                    label=_series_line_label(s, m, models),
                )
        if ax.has_data():
            ax.set_xscale("log")
        else:
            _no_data(ax, "no accuracy with gossip bytes" if any_bytes else "no gossip bytes recorded")
        ax.set_title(f"{_fmt_num(k)} digits per node, share ratio {_fmt_num(share)}", fontsize=10)
        ax.set_xlabel("cumulative gossip bytes per node")
        ax.set_ylabel("accuracy")
        _percent_axis(ax)
        ax.grid(alpha=0.3)
    fig.suptitle(
        "Accuracy vs cumulative gossip bytes per node\n"
        "(a point per round; bytes: mean over nodes and seeds of those sent so far; accuracy: mean over nodes and seeds)",
        fontsize=11,
    )
    _legend(fig, axes, "strategy")
    return fig


def _fig_accuracy_vs_mia_auc(t: Tables) -> Any:
    """Per-node final accuracy vs the final AUC of a membership attack on that node's model, a panel per digits-per-node.

    Leakage and exposure measure what the exchange phase sent; the attack
    measures what the trained model gives away about its own training data,
    which is what an accurate but overfitted node pays for. An AUC of 0.5
    (the dashed line) is chance: the attack cannot tell members from
    non-members. Each point is a node of a run at its last round, coloured by
    series (marker: model). Tables that did not run the attack (older ones)
    get a note instead of points.
    """
    series, colours, models, _ = _line_styles(t.data, by="series")
    markers = {m: _MARKERS[i % len(_MARKERS)] for i, m in enumerate(models)}
    nodes = t.nodes.dropna(subset=["mia-auc", "accuracy"])
    any_mia = t.data["mia-auc"].notna().any()
    ks = _uniques(t.groups["digits-per-node"])
    fig, axes = _figure(len(ks), sharey=True, legend_width=2.8)
    for ax, k in zip(axes, ks):
        sub = nodes[_match(nodes["digits-per-node"], k)]
        for s in series:
            for m in models:
                g = sub[(sub["series"] == s) & (sub["model"] == m)]
                if g.empty:
                    continue
                ax.scatter(
                    g["mia-auc"],
                    g["accuracy"],
                    s=18,
                    alpha=0.6,
                    color=colours[s],
                    marker=markers[m],
                    label=_series_line_label(s, m, models),
                    edgecolors="none",
                )
        if ax.has_data():
            ax.axvline(0.5, color="0.3", linestyle="--", linewidth=1, label="chance (AUC 0.5)")
        else:
            _no_data(
                ax, "no final accuracy with a membership-attack AUC" if any_mia else "membership attack not recorded"
            )
        ax.set_title(f"{_fmt_num(k)} digits per node", fontsize=10)
        ax.set_xlabel("membership-attack AUC (final round)")
        ax.set_ylabel("node final accuracy")
        _percent_axis(ax)
        ax.grid(alpha=0.3)
    fig.suptitle(
        f"Per-node final accuracy vs membership-inference AUC ({len(nodes)} nodes, {nodes['cell'].nunique()} runs)\n"
        "(loss-threshold attack on each node's model; dashed: chance)",
        fontsize=11,
    )
    _legend(fig, axes, "strategy")
    return fig


def _fig_accuracy_vs_leakage_by_mechanism(t: Tables) -> Any:
    """Per-node final accuracy vs leakage, coloured by exchange mechanism, with each mechanism's mean.

    ``accuracy-vs-leakage`` colours by strategy; here the colour is what was
    sent (:func:`flower_dl.report.table._mechanism_labels`: no exchange, raw
    samples, noised samples, class means), so that raw and privatized sharing
    sit on one map: a mechanism is worth it where its mean (large marker,
    mean over runs of the run's node means) lies left of raw's at a similar
    height. Faint points are the nodes; markers tell models apart.
    """
    mechanisms = _mechanism_order(t.data["mechanism"])
    colours = _strategy_colours(mechanisms)
    models = _uniques(t.data["model"])
    markers = {m: _MARKERS[i % len(_MARKERS)] for i, m in enumerate(models)}
    nodes = t.nodes.dropna(subset=["leakage", "accuracy"])
    means = _mechanism_means(t.data)
    fig, (ax,) = _figure(1, legend_width=2.6, panel=(5.5, 4.0))
    for mech in mechanisms:
        for m in models:
            g = nodes[(nodes["mechanism"] == mech) & (nodes["model"] == m)]
            if g.empty:
                continue
            ax.scatter(
                g["leakage"], g["accuracy"], s=14, alpha=0.3, color=colours[mech], marker=markers[m], edgecolors="none"
            )
            mean = means[(means["mechanism"] == mech) & (means["model"] == m)]
            ax.scatter(
                mean["leakage"],
                mean["acc"],
                s=90,
                color=colours[mech],
                marker=markers[m],
                edgecolors="black",
                linewidths=1,
                zorder=3,
                label=_series_line_label(mech, m, models),
            )
    title = (
        "Final accuracy vs leakage per exchange mechanism\n"
        "(faint points: nodes; large markers: mean over runs of each mechanism)"
    )
    return _finish_leakage_axes(fig, ax, nodes, title, "exchange")


def _curve_groups(df: pd.DataFrame) -> tuple[list[tuple[str, pd.Series]], str]:
    """The learning-curve lines as ``(label, row mask)``: one per (digits, share ratio)
    group if there are at most :data:`MAX_LINES`, else one per digits-per-node,
    else one per share ratio, else :data:`MAX_LINES` evenly spaced groups."""
    k = df["digits-per-node"].fillna(np.inf)
    share = df["share-ratio"].fillna(np.inf)
    combos = sorted(pd.DataFrame({"k": k, "s": share}).drop_duplicates().itertuples(index=False, name=None))
    ks, shares = sorted(set(k)), sorted(set(share))
    note = ""
    if len(combos) <= MAX_LINES:
        lines = [(f"k={_fmt_inf(a)}, share {_fmt_inf(b)}", (k == a) & (share == b)) for a, b in combos]
    elif len(ks) <= MAX_LINES:
        lines = [(f"k={_fmt_inf(a)} (all share ratios)", k == a) for a in ks]
    elif len(shares) <= MAX_LINES:
        lines = [(f"share {_fmt_inf(b)} (all k)", share == b) for b in shares]
    else:
        pick = np.unique(np.linspace(0, len(combos) - 1, MAX_LINES).round().astype(int))
        lines = [
            (
                f"k={_fmt_inf(combos[i][0])}, share {_fmt_inf(combos[i][1])}",
                (k == combos[i][0]) & (share == combos[i][1]),
            )
            for i in pick
        ]
        note = f" ({len(lines)} of {len(combos)} digits/share groups shown)"
    return lines, note


def _fmt_inf(v: Any) -> str:
    return _NA if v == np.inf else _fmt_num(v)


def _fig_learning_curves(t: Tables) -> Any:
    """Accuracy per round, a panel per strategy (and model), a line per digits/share-ratio group."""
    df = t.data
    strategies = _uniques(df["strategy"])
    models = _uniques(df["model"])
    panels = [(s, m) for s in strategies for m in models if ((df["strategy"] == s) & (df["model"] == m)).any()]
    lines, note = _curve_groups(df)
    colours = _series_colours(len(lines))
    has_round = df["round"].notna()
    fig, axes = _figure(len(panels), max_cols=3, sharey=True)
    for ax, (s, m) in zip(axes, panels):
        in_panel = has_round & (df["strategy"] == s) & (df["model"] == m)
        for colour, (label, mask) in zip(colours, lines):
            g = df[in_panel & mask]
            if g.empty:
                continue
            per_cell = g.groupby(["round", "cell"])["accuracy"].mean().groupby(level="round").mean()
            lo_hi = g.groupby("round")["accuracy"].agg(["min", "max"])
            curve = pd.concat([per_cell.rename("mean"), lo_hi], axis=1).dropna(subset=["mean"])
            if curve.empty:
                continue
            x = curve.index.to_numpy(dtype=float)
            ax.plot(x, curve["mean"], color=colour, marker="o", markersize=3, label=label)
            ax.fill_between(x, curve["min"], curve["max"], color=colour, alpha=0.15, linewidth=0)
        if not ax.has_data():
            _no_data(ax, "no accuracy recorded")
        title = _strategy_label(s) + (f", {m}" if len(models) > 1 else "")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("round")
        ax.set_ylabel("accuracy")
        _percent_axis(ax)
        _integer_axis(ax)
        ax.grid(alpha=0.3)
    fig.suptitle("Accuracy per round (mean over nodes and seeds; band: min-max node)" + note, fontsize=11)
    _legend(fig, axes, "digits / share ratio")
    return fig


FIGURE_MAKERS: dict[str, Callable[[Tables], Any]] = {
    "accuracy-vs-share-ratio": _fig_accuracy_vs_share_ratio,
    "accuracy-vs-digits": _fig_accuracy_vs_digits,
    "leakage-vs-digits": partial(_fig_leakage_vs, x="digits-per-node", line="share-ratio"),
    "leakage-vs-share-ratio": partial(_fig_leakage_vs, x="share-ratio", line="digits-per-node"),
    "accuracy-vs-leakage": _fig_accuracy_vs_leakage,
    "learning-curves": _fig_learning_curves,
    "pareto-by-strategy": _fig_pareto_by_strategy,
    "accuracy-vs-gossip-bytes": _fig_accuracy_vs_gossip_bytes,
    "accuracy-vs-mia-auc": _fig_accuracy_vs_mia_auc,
    "accuracy-vs-leakage-by-mechanism": _fig_accuracy_vs_leakage_by_mechanism,
}
"""Figure base name -> the function that draws it from the report's :class:`Tables`."""

FIGURES: tuple[str, ...] = tuple(FIGURE_MAKERS)
"""Base names of the figures :func:`flower_dl.report.write_report` writes (``<base>.<format>``)."""
