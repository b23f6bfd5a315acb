"""The figures of accuracy against what leaks: leakage, Pareto fronts, membership attacks, identified samples, epsilon, mechanisms.

See :mod:`flower_dl.report.figures`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from flower_dl.report.drawing import (
    _MARKERS,
    REFERENCE_GID,
    Plot,
    _figure,
    _integer_axis,
    _legend,
    _lines,
    _no_data,
    _percent_axis,
    _series_colours,
    _strategy_colours,
)
from flower_dl.report.figure_data import AUC_LABEL, DIGITS_LABEL, LEAKAGE_LABEL, SHARE_LABEL, Tables, _pooled
from flower_dl.report.labels import _mechanism_order
from flower_dl.report.stats import (
    _final_node_points,
    _mechanism_means,
)
from flower_dl.report.table import pareto_front
from flower_dl.report.values import _fmt_num, _match, _uniques

_DATA_NAMES = {"digits-per-node": "digits per node", "share-ratio": "share ratio"}
_DATA_AXES = {"digits-per-node": DIGITS_LABEL, "share-ratio": SHARE_LABEL}


def _fig_leakage_vs(t: Tables, x: str, line: str) -> Plot:
    """Mean node leakage vs ``x``, a line per value of the data setting ``line`` and per algorithm (min-max bars).

    Each point is one configuration: the mean over its nodes and runs (seeds)
    of the node leakage, bars from the smallest to the largest node.
    """
    leak = t.leakage
    pairs = leak.drop_duplicates(["line", line]) if not leak.empty else leak
    several = not leak.empty and leak["line"].nunique() > 1
    fig, (ax,) = _figure(1, legend_width=3.0, panel=(5.5, 3.8))
    plot = Plot(fig, x_name=x, no_data="no leakage recorded")
    colours = _series_colours(len(pairs))
    for colour, (_, pair) in zip(colours, pairs.iterrows()):
        g = leak[(leak["line"] == pair["line"]) & _match(leak[line], pair[line])]
        label = f"{_DATA_NAMES[line]} {_fmt_num(pair[line])}" + (f", {pair['line-label']}" if several else "")
        plot.errorbar(ax, g[x], g["mean"], g["min"], g["max"], panel="", series=label, color=colour, label=label)
    if not ax.has_data():
        _no_data(ax, "no leakage recorded")
    ax.set_xlabel(_DATA_AXES[x])
    ax.set_ylabel(LEAKAGE_LABEL)
    if x == "digits-per-node":
        _integer_axis(ax)
    ax.grid(alpha=0.3)
    ax.set_title(f"Node leakage vs {_DATA_NAMES[x]}\n(mean over nodes and seeds; bars: min-max node)", fontsize=10)
    _legend(fig, [ax], _DATA_NAMES[line])
    return plot


def _fig_accuracy_vs_leakage(t: Tables) -> Plot:
    """Per-node final accuracy vs that node's leakage, with the Pareto front of the trade-off: the main figure.

    Each point is a node of a run at its last round, coloured by its line
    (algorithm and setting; marker: model); a colour's points span the data
    settings, which the title names. The black front is over every node of
    the sweep: the best trade-off it reached.
    """
    nodes = _final_node_points(t.data)
    fig, (ax,) = _figure(1, legend_width=3.0, panel=(5.5, 4.0))
    plot = Plot(fig, x_name="node leakage", no_data="no node with both a final accuracy and a leakage")
    for line in _lines(nodes) if not nodes.empty else []:
        g = nodes[nodes["line"] == line.key]
        kw = {"s": 18, "alpha": 0.6, "color": line.colour, "marker": line.marker, "edgecolors": "none"}
        plot.scatter(
            ax, g["leakage"], g["accuracy"], panel="", series=line.label, element="node", label=line.label, **kw
        )
    if not nodes.empty:
        pts = nodes[["leakage", "accuracy"]].to_numpy(dtype=float)
        front = pts[pareto_front(pts)]
        kw = {"color": "black", "linewidth": 1.2, "marker": "o", "markersize": 6, "markerfacecolor": "none"}
        kw["label"] = "Pareto front"
        plot.step(ax, front[:, 0], front[:, 1], panel="", series="Pareto front", element="Pareto front", **kw)
    title = (
        f"Per-node final accuracy vs leakage ({len(nodes)} nodes, {nodes['cell'].nunique()} runs)\n"
        "Pareto front: lower leakage, higher accuracy" + _pooled(t.data, "line", "each colour pools")
    )
    return _finish_leakage_axes(plot, ax, nodes, title, "strategy")


def _finish_leakage_axes(plot: Plot, ax: Any, nodes: Any, title: str, legend_title: str) -> Plot:
    """The axes every accuracy-vs-leakage figure shares: labels, grid, title, legend (a note when ``nodes`` is empty)."""
    if nodes.empty:
        _no_data(ax, "no node with both a final accuracy and a leakage")
    ax.set_xlabel(LEAKAGE_LABEL)
    ax.set_ylabel("node final accuracy (%)")
    _percent_axis(ax)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=10)
    _legend(plot.figure, [ax], legend_title)
    return plot


def _fig_pareto_by_strategy(t: Tables) -> Plot:
    """Per-node final accuracy vs leakage with one Pareto front per line (algorithm and setting).

    The single front of ``accuracy-vs-leakage`` shows the best trade-off of
    the whole sweep, but not what each algorithm can reach on its own: here
    each line (its strategy, gossip settings and any other setting that
    varies) has its own front, in its colour, over its nodes (faint points),
    so the fronts can be compared; markers and line styles tell models apart.
    A front spans the data settings, which the title names.
    """
    nodes = _final_node_points(t.data)
    fig, (ax,) = _figure(1, legend_width=3.0, panel=(5.5, 4.0))
    plot = Plot(fig, x_name="node leakage", no_data="no node with both a final accuracy and a leakage")
    for line in _lines(nodes) if not nodes.empty else []:
        g = nodes[nodes["line"] == line.key]
        pts = g[["leakage", "accuracy"]].to_numpy(dtype=float)
        kw = {"s": 14, "alpha": 0.3, "color": line.colour, "marker": line.marker, "edgecolors": "none"}
        plot.scatter(ax, pts[:, 0], pts[:, 1], panel="", series=line.label, element="node", **kw)
        front = pts[pareto_front(pts)]
        kw = {"color": line.colour, "linestyle": line.style, "linewidth": 1.4, "marker": line.marker, "markersize": 5}
        kw["label"] = line.label
        plot.step(ax, front[:, 0], front[:, 1], panel="", series=line.label, element="Pareto front", **kw)
    title = (
        "Pareto front of final accuracy vs leakage per strategy\n"
        "(faint points: nodes; lines: each strategy's non-dominated nodes)"
        + _pooled(t.data, "line", "each front pools")
    )
    return _finish_leakage_axes(plot, ax, nodes, title, "strategy")


def _fig_accuracy_vs_mia_auc(t: Tables) -> Plot:
    """Per-node final accuracy vs the final AUC of a membership attack on that node's model, a panel per digits-per-node.

    Leakage and exposure measure what the exchange phase sent; the attack
    measures what the trained model gives away about its own training data,
    which is what an accurate but overfitted node pays for. An AUC of 0.5
    (the dashed line) is chance: the attack cannot tell members from
    non-members. Each point is a node of a run at its last round, coloured by
    its line (marker: model); a colour's points in a panel span the share
    ratios, which the title names. Tables that did not run the attack (older
    ones) are not drawn.
    """
    nodes = t.nodes.dropna(subset=["mia-auc", "accuracy"])
    any_mia = t.data["mia-auc"].notna().any()
    lines = _lines(t.groups)
    ks = _uniques(t.groups["digits-per-node"])
    fig, axes = _figure(len(ks), sharey=True, legend_width=3.0)
    plot = Plot(
        fig,
        x_name="membership-attack AUC",
        no_data="no final accuracy with a membership-attack AUC" if any_mia else "membership attack not recorded",
    )
    for ax, k in zip(axes, ks):
        sub = nodes[_match(nodes["digits-per-node"], k)]
        panel = f"{_fmt_num(k)} digits per node"
        for line in lines:
            g = sub[sub["line"] == line.key]
            kw = {"s": 18, "alpha": 0.6, "color": line.colour, "marker": line.marker, "edgecolors": "none"}
            plot.scatter(
                ax, g["mia-auc"], g["accuracy"], panel=panel, series=line.label, element="node", label=line.label, **kw
            )
        if ax.has_data():
            chance = ax.axvline(0.5, color="0.3", linestyle="--", linewidth=1, label="chance (AUC 0.5)")
            chance.set_gid(REFERENCE_GID)
        else:
            _no_data(ax, plot.no_data)
        ax.set_title(panel, fontsize=10)
        ax.set_xlabel(AUC_LABEL)
        ax.set_ylabel("node final accuracy (%)")
        _percent_axis(ax)
        ax.grid(alpha=0.3)
    fig.suptitle(
        f"Per-node final accuracy vs membership-inference AUC ({len(nodes)} nodes, {nodes['cell'].nunique()} runs)\n"
        "(loss-threshold attack on each node's model; dashed: chance)"
        + _pooled(t.data, ["line", "digits-per-node"], "each colour pools"),
        fontsize=11,
    )
    _legend(fig, axes, "strategy")
    return plot


IDENTIFIED_LABEL = "samples identified with confidence (%)"


def _model_channel(nodes: pd.DataFrame) -> tuple[pd.Series, str]:
    """Per node, the model channel's identified fraction: the strongest attack on the model it sent, and its name."""
    rmia, loss = nodes["sent-rmia-tpr-1fpr"], nodes["sent-mia-tpr-1fpr"]
    if rmia.notna().any():
        return rmia.where(rmia.notna(), loss), "RMIA (loss threshold where RMIA did not run)"
    return loss, "loss-threshold attack"


def _fig_accuracy_vs_identified(t: Tables) -> Plot:
    """Per-node final accuracy vs the fraction of its samples a neighbour identifies with confidence, both channels.

    The question of the study, on one scale: a node can leak its samples
    through the exchange (left: the exposed fraction, exact, since those
    samples were sent) and through the models it sends each round (right:
    the true-positive rate at 1% false positives of the membership attack on
    the last attacked model it sent, RMIA where it ran; the dashed line is
    the 1% a guess reaches). Each point is a node of a run at its last round,
    coloured by its line (marker: model). Runs without the attack on the
    sent model (older tables, ``mia-samples = 0``) have no right-hand point.
    """
    nodes = t.nodes.dropna(subset=["accuracy"])
    model_x, attack = _model_channel(nodes)
    channels = (("through the exchange (exposed fraction)", nodes["exposed-fraction"]),
                (f"through the models ({attack}, TPR at 1% FPR)", model_x))  # fmt: skip
    lines = _lines(t.groups)
    fig, axes = _figure(len(channels), sharey=True, legend_width=3.0)
    plot = Plot(fig, x_name="fraction identified", no_data="no final accuracy with an identified fraction")
    for ax, (panel, x) in zip(axes, channels):
        for line in lines:
            mask = (nodes["line"] == line.key).to_numpy()
            kw = {"s": 18, "alpha": 0.6, "color": line.colour, "marker": line.marker, "edgecolors": "none"}
            plot.scatter(ax, x[mask], nodes["accuracy"][mask], panel=panel, series=line.label, element="node",
                         label=line.label, **kw)  # fmt: skip
        if ax.has_data() and panel.startswith("through the models"):
            ax.axvline(0.01, color="0.3", linestyle="--", linewidth=1, label="chance (1%)").set_gid(REFERENCE_GID)
        if not ax.has_data():
            _no_data(ax, plot.no_data)
        ax.set_title(panel, fontsize=10)
        ax.set_xlabel(IDENTIFIED_LABEL)
        ax.set_ylabel("node final accuracy (%)")
        _percent_axis(ax)
        _percent_axis(ax, "x")
        ax.grid(alpha=0.3)
    fig.suptitle(
        f"Per-node final accuracy vs the fraction of its samples a neighbour identifies ({len(nodes)} nodes, "
        f"{nodes['cell'].nunique()} runs)\n(left: sent in the exchange; right: named by a membership attack on "
        "the model it sends, at 1% false positives)" + _pooled(t.data, ["line"], "each colour pools"),
        fontsize=11,
    )
    _legend(fig, axes, "strategy")
    return plot


EPSILON_PANELS: tuple[tuple[str, str, str], ...] = (
    ("dp-epsilon", "DP-SGD", "DP-SGD epsilon of the node's samples (log scale)"),
    ("central-dp-epsilon", "central DP", "central DP epsilon of the node, node-level (log scale)"),
)
"""The epsilon columns the accuracy-vs-epsilon figure draws: column, panel, x label."""


def _fig_accuracy_vs_epsilon(t: Tables) -> Plot:
    """Per-node final accuracy vs its epsilon (log scale), one panel per guarantee: what a formal bound costs.

    DP-SGD's epsilon is about one sample of the node, over all its local
    training; central DP's (the parameter server's noised mean) about the
    node's whole data taking part; both at ``dp-delta``, from Opacus's RDP
    accountant. Neither covers the raw samples a node sends in the exchange
    (for those no DP holds: epsilon is infinite). Runs without DP have no
    epsilon and are not drawn; a panel without any says so.
    """
    lines = _lines(t.groups)
    fig, axes = _figure(len(EPSILON_PANELS), legend_width=3.0)
    plot = Plot(fig, x_name="DP epsilon", no_data="no run with DP (dp- or central-dp-noise-multiplier > 0)")
    drawn = 0
    for ax, (column, panel, xlabel) in zip(axes, EPSILON_PANELS):
        nodes = t.nodes.dropna(subset=["accuracy", column]) if column in t.nodes else t.nodes.iloc[:0]
        nodes = nodes[np.isfinite(nodes[column].astype(float))]
        drawn += len(nodes)
        for line in lines:
            g = nodes[nodes["line"] == line.key]
            kw = {"s": 18, "alpha": 0.6, "color": line.colour, "marker": line.marker, "edgecolors": "none"}
            plot.scatter(ax, g[column], g["accuracy"], panel=panel, series=line.label, element="node",
                         label=line.label, **kw)  # fmt: skip
        if ax.has_data():
            ax.set_xscale("log")
        else:
            _no_data(ax, f"no run with {panel}")
        ax.set_title(panel)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("node final accuracy (%)")
        _percent_axis(ax)
        ax.grid(alpha=0.3)
    fig.suptitle(
        f"Per-node final accuracy vs DP epsilon ({drawn} node points; "
        "raw samples sent in the exchange have no DP protection)" + _pooled(t.data, ["line"], "each colour pools"),
        fontsize=11,
    )
    _legend(fig, axes, "strategy")
    return plot


def _fig_accuracy_vs_leakage_by_mechanism(t: Tables) -> Plot:
    """Per-node final accuracy vs leakage, coloured by exchange mechanism, with each mechanism's mean.

    ``accuracy-vs-leakage`` colours by algorithm; here the colour is what was
    sent (no exchange, raw samples, noised samples, class means), so that raw
    and privatized sharing sit on one map: a mechanism is worth it where its
    mean (large marker, mean over runs of the run's node means) lies left of
    raw's at a similar height. Faint points are the nodes; markers tell
    models apart. The means average over every other varying key by design;
    the title names them with their values.
    """
    mechanisms = _mechanism_order(t.data["mechanism"])
    colours = _strategy_colours(mechanisms)
    models = _uniques(t.data["model"])
    markers = {m: _MARKERS[i % len(_MARKERS)] for i, m in enumerate(models)}
    nodes = t.nodes.dropna(subset=["leakage", "accuracy"])
    means = _mechanism_means(t.data)
    fig, (ax,) = _figure(1, legend_width=2.6, panel=(5.5, 4.0))
    plot = Plot(fig, x_name="node leakage", no_data="no node with both a final accuracy and a leakage")
    for mech in mechanisms:
        for m in models:
            g = nodes[(nodes["mechanism"] == mech) & (nodes["model"] == m)]
            if g.empty:
                continue
            label = f"{mech}, {m}" if len(models) > 1 else mech
            kw = {"s": 14, "alpha": 0.3, "color": colours[mech], "marker": markers[m], "edgecolors": "none"}
            plot.scatter(ax, g["leakage"], g["accuracy"], panel="", series=label, element="node", **kw)
            mean = means[(means["mechanism"] == mech) & (means["model"] == m)]
            kw = {"s": 90, "color": colours[mech], "marker": markers[m], "edgecolors": "black", "linewidths": 1}
            plot.scatter(
                ax,
                mean["leakage"],
                mean["acc"],
                panel="",
                series=label,
                element="mechanism mean",
                zorder=3,
                label=label,
                **kw,
            )
    title = (
        "Final accuracy vs leakage per exchange mechanism\n"
        "(faint points: nodes; large markers: mean over runs of each mechanism)"
        + _pooled(t.data, ["mechanism", "model"], "each mechanism's points and mean span")
    )
    return _finish_leakage_axes(plot, ax, nodes, title, "exchange")
