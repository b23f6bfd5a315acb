"""The figures of :mod:`flower_dl.report`, and :data:`FIGURE_MAKERS`, the list of them.

A figure is a function ``_fig_<name>(t: Tables) -> Plot`` whose docstring
says what it shows; it draws with the methods of
:class:`~flower_dl.report.drawing.Plot`, which record every number drawn,
so that the figure's CSV (:attr:`Plot.points`) is exactly what it plots.
:data:`FIGURE_MAKERS` maps each figure's base name (its files are
``<base>.<format>`` and ``<base>.csv``) to that function, in the order
:func:`flower_dl.report.write_report` writes them and ``summary.md`` links
them. To add a figure: write the function (with the helpers of
:mod:`flower_dl.report.drawing`) and add one entry to :data:`FIGURE_MAKERS`.

Every line, colour or point of a figure is one configuration or one ``line``
(every varying key but the seed and the data settings, see
:mod:`flower_dl.report.table`), so that runs that differ in anything but
their seed are never drawn as one; where a figure pools or averages over
keys by design (the points of one colour span several data settings, the
mechanism means span the algorithms), its title names them with their
values (:func:`flower_dl.report.table._averaged_over`). A figure whose
x-axis would show a single value, or nothing, is not drawn
(:func:`not_drawn`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
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
from flower_dl.report.table import (
    _NA,
    _averaged_over,
    _byte_curves,
    _final_node_points,
    _fmt_averaged,
    _fmt_num,
    _fmt_value,
    _group_stats,
    _isnan,
    _leakage_stats,
    _match,
    _mechanism_means,
    _mechanism_order,
    _node_metrics,
    _prepare,
    _uniques,
    pareto_front,
)

MAX_LINES = 6
"""Most data-setting lines per panel of ``learning-curves`` (more are thinned, evenly, and the title says so;
never merged)."""

LEAKAGE_LABEL = "node leakage: KL divergence (nats)"
"""The leakage axis: share ratio x the sum of KL divergences over neighbours, in nats (``scipy.special.rel_entr``)."""

SHARE_LABEL = "share ratio (fraction of a node's samples)"
DIGITS_LABEL = "digits per node (classes)"
AUC_LABEL = "membership-attack AUC (AUC, 0.5 = chance)"


@dataclass(frozen=True)
class Tables:
    """What every figure is drawn from, computed once per report.

    Attributes
    ----------
    data : pandas.DataFrame
        The results table as :func:`flower_dl.report.read_table` returns it,
        prepared by :func:`flower_dl.report.table._prepare`: missing
        ``strategy``/``model`` labels as ``"n/a"``, the accuracy of failed
        node-rounds removed, and each run's labels and keys (``series``,
        ``mechanism``, ``setting``, ``line-label``, ``config``, ``line``, ...).
    groups : pandas.DataFrame
        One row per configuration: runs, seeds, final accuracy (mean, std,
        min and max node), mean and total node leakage, and the labels.
    leakage : pandas.DataFrame
        Node leakage per configuration: mean, min and max over nodes and runs.
    curves : pandas.DataFrame
        Per configuration and round: the cumulative gossip bytes per node and
        the accuracy, each averaged over its runs
        (:func:`flower_dl.report.table._byte_curves`).
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


def not_drawn(plot: Plot) -> str:
    """Why a drawn figure is not worth writing, or ``""`` when it is.

    A figure without a point is only a note, and one whose points all share
    one x value shows a single column on an axis of no meaning (``2.84`` to
    ``3.16`` digits per node): neither is fit for a paper, and the summary
    says why instead.

    Parameters
    ----------
    plot : Plot
        What a figure function drew.

    Returns
    -------
    str
        ``plot.no_data`` when no point was drawn, ``"one <x> value (<v>); it
        needs two or more"`` when every point has the same x, else ``""``.
    """
    points = plot.points
    if points.empty:
        return plot.no_data
    xs = _uniques(points["x"])
    if len(xs) == 1:
        return f"one {plot.x_name} value ({_fmt_value(xs[0])}); it needs two or more"
    return ""


def _pooled(df: pd.DataFrame, by: str | Sequence[str], verb: str) -> str:
    """``"\\n<verb> digits-per-node (2, 5) and share-ratio (0, 0.2)"``: what groups of ``by`` span, or ``""``."""
    items = _averaged_over(df, by)
    return f"\n({verb} {_fmt_averaged(items)})" if items else ""


def _fig_accuracy_vs_share_ratio(t: Tables) -> Plot:
    """Final accuracy vs share ratio, a line per algorithm and setting, a panel per digits-per-node.

    Each point is one configuration (only its seeds averaged): the mean over
    runs of the run's node mean, with bars from the smallest to the largest
    node accuracy.
    """
    groups = t.groups
    lines = _lines(groups)
    ks = _uniques(groups["digits-per-node"])
    fig, axes = _figure(len(ks), sharey=True, legend_width=3.0)
    plot = Plot(fig, x_name="share-ratio", no_data="no final accuracy with a share ratio")
    for ax, k in zip(axes, ks):
        sub = groups[_match(groups["digits-per-node"], k)]
        panel = f"{_fmt_num(k)} digits per node"
        for line in lines:
            g = sub[sub["line"] == line.key]
            kw = {"color": line.colour, "linestyle": line.style, "label": line.label}
            plot.errorbar(
                ax, g["share-ratio"], g["acc"], g["acc-min"], g["acc-max"], panel=panel, series=line.label, **kw
            )
        if not ax.has_data():
            _no_data(ax, "no final accuracy with a share ratio")
        ax.set_title(panel, fontsize=10)
        ax.set_xlabel(SHARE_LABEL)
        ax.set_ylabel("final accuracy (%)")
        _percent_axis(ax)
        ax.grid(alpha=0.3)
    fig.suptitle(
        "Final-round accuracy vs share ratio\n(mean over nodes and seeds; bars: min-max node accuracy)", fontsize=11
    )
    _legend(fig, axes, "strategy")
    return plot


def _fig_accuracy_vs_digits(t: Tables) -> Plot:
    """Final accuracy vs digits-per-node at share ratio 0 (or the smallest one present), a line per algorithm."""
    groups = t.groups
    lines = _lines(groups)
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
    fig, (ax,) = _figure(1, legend_width=3.0, panel=(5.5, 3.8))
    plot = Plot(fig, x_name="digits-per-node", no_data="no final accuracy with a digits-per-node")
    for line in lines:
        g = sub[sub["line"] == line.key]
        kw = {"color": line.colour, "linestyle": line.style, "label": line.label}
        plot.errorbar(ax, g["digits-per-node"], g["acc"], g["acc-min"], g["acc-max"], panel="", series=line.label, **kw)
    if not ax.has_data():
        _no_data(ax, "no final accuracy with a digits-per-node")
    ax.set_xlabel(DIGITS_LABEL)
    ax.set_ylabel("final accuracy (%)")
    _percent_axis(ax)
    _integer_axis(ax)
    ax.grid(alpha=0.3)
    ax.set_title(
        f"Final-round accuracy vs digits per node\n{where}\n(mean over nodes and seeds; bars: min-max node accuracy)",
        fontsize=10,
    )
    _legend(fig, [ax], "strategy")
    return plot


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


def _fig_accuracy_vs_gossip_bytes(t: Tables) -> Plot:
    """Accuracy vs cumulative gossip bytes per node, a line per algorithm and setting, a panel per data setting.

    Rounds measure compute; bytes measure communication, where decentralized
    algorithms differ most (gossip steps, schedules, compression). Each point
    is a round: x the bytes a node has sent up to it (mean over nodes, then
    over runs), y the mean accuracy (over nodes, then runs). Log-scale x, so
    points with no bytes are not drawn; configurations without
    ``gossip-bytes`` (an older table, or one that did not measure it) are
    left out, and a panel without any says so. One panel per
    (digits-per-node, share-ratio) pair, so each line is one configuration.
    """
    curves = t.curves.dropna(subset=["gossip-bytes", "acc"])
    curves = curves[curves["gossip-bytes"] > 0]
    any_bytes = t.data["gossip-bytes"].notna().any()
    lines = _lines(t.groups)
    panels = _data_panels(t.groups)
    fig, axes = _figure(len(panels), sharey=True, legend_width=3.0)
    plot = Plot(
        fig,
        x_name="cumulative gossip bytes",
        no_data="no accuracy with gossip bytes" if any_bytes else "no gossip bytes recorded",
    )
    for ax, (k, share) in zip(axes, panels):
        sub = curves[_match(curves["digits-per-node"], k) & _match(curves["share-ratio"], share)]
        panel = f"{_fmt_num(k)} digits per node, share ratio {_fmt_num(share)}"
        for line in lines:
            g = sub[sub["line"] == line.key]
            kw = {"color": line.colour, "linestyle": line.style, "label": line.label}
            plot.line(ax, g["gossip-bytes"], g["acc"], panel=panel, series=line.label, **kw)
        if ax.has_data():
            ax.set_xscale("log")
        else:
            _no_data(ax, plot.no_data)
        ax.set_title(panel, fontsize=10)
        ax.set_xlabel("cumulative gossip bytes per node (bytes, log scale)")
        ax.set_ylabel("accuracy (%)")
        _percent_axis(ax)
        ax.grid(alpha=0.3)
    fig.suptitle(
        "Accuracy vs cumulative gossip bytes per node\n"
        "(a point per round; bytes: mean over nodes and seeds of those sent so far; accuracy: mean over nodes and seeds)",
        fontsize=11,
    )
    _legend(fig, axes, "strategy")
    return plot


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


def _data_settings(df: pd.DataFrame) -> tuple[list[tuple[Any, Any]], str]:
    """The (digits-per-node, share-ratio) pairs the learning curves draw, and a note when some are left out.

    At most :data:`MAX_LINES`, evenly spaced over the sorted pairs present;
    never merged, so that a line is always one configuration.
    """
    pairs = df[["digits-per-node", "share-ratio"]].drop_duplicates()
    combos = sorted(
        pairs.itertuples(index=False, name=None), key=lambda p: tuple(np.inf if _isnan(v) else v for v in p)
    )
    if len(combos) <= MAX_LINES:
        return combos, ""
    pick = np.unique(np.linspace(0, len(combos) - 1, MAX_LINES).round().astype(int))
    return [combos[i] for i in pick], f" ({len(pick)} of {len(combos)} digits/share settings shown)"


def _fmt_inf(v: Any) -> str:
    return _NA if _isnan(v) else _fmt_num(v)


def _fig_learning_curves(t: Tables) -> Plot:
    """Accuracy per round, a panel per algorithm and setting (and model), a line per digits/share-ratio setting.

    Each line is one configuration: per round, the mean over its runs of the
    run's node mean; the band spans the smallest to the largest node.
    """
    df = t.data[t.data["round"].notna()]
    panels = _lines(t.groups)
    settings, note = _data_settings(df)
    colours = _series_colours(len(settings))
    fig, axes = _figure(len(panels), max_cols=3, sharey=True)
    plot = Plot(fig, x_name="round", no_data="no accuracy recorded")
    for ax, p in zip(axes, panels):
        in_panel = df[df["line"] == p.key]
        for colour, (k, share) in zip(colours, settings):
            g = in_panel[_match(in_panel["digits-per-node"], k) & _match(in_panel["share-ratio"], share)]
            if g.empty:
                continue
            per_cell = g.groupby(["round", "cell"])["accuracy"].mean().groupby(level="round").mean()
            lo_hi = g.groupby("round")["accuracy"].agg(["min", "max"])
            curve = pd.concat([per_cell.rename("mean"), lo_hi], axis=1).dropna(subset=["mean"])
            label = f"k={_fmt_inf(k)}, share {_fmt_inf(share)}"
            x = curve.index.to_numpy(dtype=float)
            kw = {"color": colour, "label": label}
            plot.line(ax, x, curve["mean"], lo=curve["min"], hi=curve["max"], panel=p.label, series=label, **kw)
        if not ax.has_data():
            _no_data(ax, "no accuracy recorded")
        ax.set_title(p.label, fontsize=9, wrap=True)
        ax.set_xlabel("round")
        ax.set_ylabel("accuracy (%)")
        _percent_axis(ax)
        _integer_axis(ax)
        ax.grid(alpha=0.3)
    fig.suptitle("Accuracy per round (mean over nodes and seeds; band: min-max node)" + note, fontsize=11)
    _legend(fig, axes, "digits / share ratio")
    return plot


FIGURE_MAKERS: dict[str, Callable[[Tables], Plot]] = {
    "accuracy-vs-share-ratio": _fig_accuracy_vs_share_ratio,
    "accuracy-vs-digits": _fig_accuracy_vs_digits,
    "leakage-vs-digits": partial(_fig_leakage_vs, x="digits-per-node", line="share-ratio"),
    "leakage-vs-share-ratio": partial(_fig_leakage_vs, x="share-ratio", line="digits-per-node"),
    "accuracy-vs-leakage": _fig_accuracy_vs_leakage,
    "learning-curves": _fig_learning_curves,
    "pareto-by-strategy": _fig_pareto_by_strategy,
    "accuracy-vs-gossip-bytes": _fig_accuracy_vs_gossip_bytes,
    "accuracy-vs-mia-auc": _fig_accuracy_vs_mia_auc,
    "accuracy-vs-identified": _fig_accuracy_vs_identified,
    "accuracy-vs-epsilon": _fig_accuracy_vs_epsilon,
    "accuracy-vs-leakage-by-mechanism": _fig_accuracy_vs_leakage_by_mechanism,
}
"""Figure base name -> the function that draws it from the report's :class:`Tables`."""

FIGURES: tuple[str, ...] = tuple(FIGURE_MAKERS)
"""Base names of the figures :func:`flower_dl.report.write_report` may write (``<base>.<format>``, ``<base>.csv``)."""

MAIN_FIGURES: tuple[str, ...] = (
    "accuracy-vs-leakage",
    "pareto-by-strategy",
    "accuracy-vs-share-ratio",
    "accuracy-vs-leakage-by-mechanism",
)
"""The main figure of ``summary.md``, in order of preference: the first that was drawn (else the first drawn).
Per-node accuracy against leakage is the trade-off the study is about."""
