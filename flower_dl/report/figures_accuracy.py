"""The figures of accuracy against the data settings, the gossip bytes and the rounds (see :mod:`flower_dl.report.figures`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from flower_dl.report.drawing import (
    Plot,
    _figure,
    _integer_axis,
    _legend,
    _lines,
    _no_data,
    _percent_axis,
    _series_colours,
)
from flower_dl.report.figure_data import DIGITS_LABEL, MAX_LINES, SHARE_LABEL, Tables
from flower_dl.report.values import _NA, _fmt_num, _isnan, _match, _uniques


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
