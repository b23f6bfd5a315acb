"""Figures and a Markdown summary from a sweep's tidy results table.

A sweep appends rows to one table (``.csv`` or ``.xlsx``): one row per
run x round x node, with the run's config in every row (see
:data:`TABLE_COLUMNS`). A run is identified by its ``cell`` (a config plus a
seed). :func:`write_report` turns such a table into the figures of
:data:`FIGURES` (each in every requested format) and ``summary.md``:

``accuracy-vs-share-ratio``  final accuracy vs share ratio, a line per strategy,
                             a panel per digits-per-node (line style: model);
``accuracy-vs-digits``       final accuracy vs digits-per-node at share ratio 0
                             (or the smallest one present);
``leakage-vs-digits``        mean node leakage vs digits-per-node, a line per
                             share ratio;
``leakage-vs-share-ratio``   mean node leakage vs share ratio, a line per
                             digits-per-node;
``accuracy-vs-leakage``      per-node final accuracy vs that node's leakage,
                             with the Pareto front of the trade-off;
``learning-curves``          accuracy per round, a panel per strategy (and
                             model), a line per digits/share-ratio group.

Accuracy statistics follow one convention throughout: a run's accuracy is the
mean over its nodes; a group's accuracy is the mean over its runs of that; the
error bars and bands span the smallest to the largest *node* accuracy of the
group. Node-rounds marked ``failed`` are left out of the accuracy statistics.
Leakage is per node and constant over rounds; a node's leakage is the mean of
its non-empty leakage cells.

Everything is made from the table alone; only pandas, numpy and matplotlib (Agg)
are used, so this module stays light (no Flower, no torch).
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flower_dl.files import atomic_write_bytes, atomic_write_text
from flower_dl.sweep import TABLE_COLUMNS, TEXT_COLUMNS  # the table sweeps write

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

CONFIG_COLUMNS: tuple[str, ...] = (
    "dataset",
    "partitioner",
    "exchange-mode",
    "topology",
    "num-nodes",
    "local-epochs",
    "num-server-rounds",
)
"""Config columns that are not part of a summary group; the summary notes when
they vary (the groups then average over them)."""

GROUP_COLUMNS: tuple[str, ...] = ("strategy", "model", "digits-per-node", "share-ratio")
"""One row of ``summary.md`` per combination of these."""

FIGURES: tuple[str, ...] = (
    "accuracy-vs-share-ratio",
    "accuracy-vs-digits",
    "leakage-vs-digits",
    "leakage-vs-share-ratio",
    "accuracy-vs-leakage",
    "learning-curves",
)
"""Base names of the figures :func:`write_report` writes (``<base>.<format>``)."""

MAX_LINES = 6
"""Most lines per panel of ``learning-curves`` (more groups are merged or thinned)."""

_NA = "n/a"
_LINESTYLES = ("-", "--", ":", "-.")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
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
def _prepare(df: pd.DataFrame) -> pd.DataFrame:
    """Strings for missing labels; failed node-rounds lose their accuracy."""
    out = df.copy()
    for col in ("strategy", "model"):
        out[col] = out[col].fillna(_NA).astype(str)
    out.loc[out["failed"].astype(bool), "accuracy"] = np.nan
    return out


def _node_leakage(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (cell, node): the node's leakage and its run's labels."""
    keys = ["cell", "node"]
    leak = df.groupby(keys, sort=False, dropna=False)["leakage"].mean().rename("leakage")
    labels = df.groupby("cell", sort=False)[[*list(GROUP_COLUMNS), "seed"]].first()
    return leak.reset_index().join(labels, on="cell")


def _cell_stats(df: pd.DataFrame) -> pd.DataFrame:
    """One row per cell: labels, final node-mean/min/max accuracy, mean node leakage."""
    fin = final_rows(df)
    labels = df.groupby("cell", sort=False)[[*list(GROUP_COLUMNS), "seed"]].first()
    acc = fin.groupby("cell", sort=False)["accuracy"].agg(["mean", "min", "max"])
    acc.columns = ["acc", "acc-min", "acc-max"]
    node_leak = _node_leakage(df).groupby("cell", sort=False)["leakage"]
    out = labels.join(acc).join(node_leak.mean().rename("leakage"))
    out = out.join(node_leak.sum(min_count=1).rename("leakage-total"))
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


def _strategy_label(name: str) -> str:
    if name == _NA:
        return name
    return f"{name} (DE)" if name == "decentralized" else f"{name} (PS)"


# ------------------------------------------------------------------- drawing
def _figure(
    n_panels: int,
    *,
    max_cols: int = 4,
    panel: tuple[float, float] = (4.2, 3.2),
    legend_width: float = 2.2,
    sharey: bool = False,
) -> tuple[Any, list[Any]]:
    """An Agg figure with ``n_panels`` axes on a wrapped grid (spare axes hidden)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n_panels = max(1, n_panels)
    ncols = min(n_panels, max_cols)
    nrows = math.ceil(n_panels / ncols)
    width = max(panel[0] * ncols + legend_width, 8.0)
    fig = Figure(figsize=(width, panel[1] * nrows + 0.7), layout="constrained")
    FigureCanvasAgg(fig)
    axes = list(fig.subplots(nrows, ncols, squeeze=False, sharey=sharey).ravel())
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def _no_data(ax: Any, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="0.4", fontsize=9, wrap=True)


def _percent_axis(ax: Any, axis: str = "y") -> None:
    from matplotlib.ticker import PercentFormatter

    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(PercentFormatter(1.0))


def _integer_axis(ax: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _legend(fig: Any, axes: Sequence[Any], title: str | None = None) -> None:
    """One figure legend (outside, right) from the unique labels of ``axes``."""
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels and not lab.startswith("_"):
                handles.append(h)
                labels.append(lab)
    if handles:
        fig.legend(handles, labels, loc="outside right center", fontsize="small", title=title, title_fontsize="small")


def _errorbar(ax: Any, x: Any, y: Any, lo: Any, hi: Any, **kw: Any) -> None:
    """A line with min-max error bars; points with a NaN x or y are skipped."""
    x, y, lo, hi = (np.asarray(a, dtype=float) for a in (x, y, lo, hi))
    ok = ~(np.isnan(x) | np.isnan(y))
    if not ok.any():
        return
    x, y, lo, hi = x[ok], y[ok], lo[ok], hi[ok]
    order = np.argsort(x, kind="stable")
    x, y, lo, hi = x[order], y[order], lo[order], hi[order]
    yerr = np.vstack([np.nan_to_num(y - lo), np.nan_to_num(hi - y)]).clip(min=0)
    ax.errorbar(x, y, yerr=yerr, capsize=3, marker=kw.pop("marker", "o"), markersize=4, **kw)


def _strategy_colours(strategies: Sequence[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {s: cmap(i % 10) for i, s in enumerate(strategies)}


def _series_colours(n: int) -> list[Any]:
    from matplotlib import colormaps

    if n <= 10:
        cmap = colormaps["tab10"]
        return [cmap(i) for i in range(n)]
    cmap = colormaps["viridis"]
    return [cmap(i / max(1, n - 1)) for i in range(n)]


def _line_styles(df: pd.DataFrame) -> tuple[list[str], dict[str, Any], list[str], dict[str, str]]:
    strategies = _uniques(df["strategy"])
    models = _uniques(df["model"])
    styles = {m: _LINESTYLES[i % len(_LINESTYLES)] for i, m in enumerate(models)}
    return strategies, _strategy_colours(strategies), models, styles


def _line_label(strategy: str, model: str, models: Sequence[str]) -> str:
    label = _strategy_label(strategy)
    return f"{label}, {model}" if len(models) > 1 else label


def _accuracy_lines(ax, sub: pd.DataFrame, x: str, strategies, colours, models, styles) -> None:
    """One line per strategy x model: mean final accuracy against ``x``, min-max bars."""
    for s in strategies:
        for m in models:
            g = sub[(sub["strategy"] == s) & (sub["model"] == m)]
            if g.empty:
                continue
            _errorbar(
                ax,
                g[x],
                g["acc"],
                g["acc-min"],
                g["acc-max"],
                color=colours[s],
                linestyle=styles[m],
                label=_line_label(s, m, models),
            )


def _fig_accuracy_vs_share_ratio(df: pd.DataFrame, groups: pd.DataFrame) -> Any:
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


def _fig_accuracy_vs_digits(df: pd.DataFrame, groups: pd.DataFrame) -> Any:
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


def _fig_leakage_vs(leak: pd.DataFrame, x: str, line: str) -> Any:
    """Mean node leakage vs ``x``, one line per value of ``line`` (min-max bars)."""
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


def _fig_accuracy_vs_leakage(df: pd.DataFrame) -> Any:
    strategies, colours, models, _ = _line_styles(df)
    markers = {m: _MARKERS[i % len(_MARKERS)] for i, m in enumerate(models)}
    fin = final_rows(df)[["cell", "node", "accuracy"]]
    nodes = _node_leakage(df).merge(fin, on=["cell", "node"], how="inner")
    nodes = nodes.dropna(subset=["leakage", "accuracy"])
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
    if nodes.empty:
        _no_data(ax, "no node with both a final accuracy and a leakage")
    else:
        pts = nodes[["leakage", "accuracy"]].to_numpy(dtype=float)
        front = pts[pareto_front(pts)]
        ax.step(front[:, 0], front[:, 1], where="post", color="black", linewidth=1.2, label="Pareto front")
        ax.scatter(front[:, 0], front[:, 1], s=36, facecolors="none", edgecolors="black", linewidths=1)
    ax.set_xlabel("node leakage")
    ax.set_ylabel("node final accuracy")
    _percent_axis(ax)
    ax.grid(alpha=0.3)
    ax.set_title(
        f"Per-node final accuracy vs leakage ({len(nodes)} nodes, "
        f"{nodes['cell'].nunique()} runs)\nPareto front: lower leakage, higher accuracy",
        fontsize=10,
    )
    _legend(fig, [ax], "strategy")
    return fig


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


def _fig_learning_curves(df: pd.DataFrame) -> Any:
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


# ------------------------------------------------------------------- writing
def _render(fig: Any, fmt: str) -> bytes:
    import matplotlib

    metadata = {"svg": {"Date": None}, "pdf": {"CreationDate": None}}.get(fmt)
    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": "flower-dl"}):
        fig.savefig(buf, format=fmt, dpi=100, metadata=metadata)
    return buf.getvalue()


def _check_formats(formats: str | Sequence[str]) -> list[str]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if isinstance(formats, str):
        formats = (formats,)
    out = [str(f).lower().lstrip(".") for f in formats]
    supported = FigureCanvasAgg(Figure()).get_supported_filetypes()
    bad = [f for f in out if f not in supported]
    if bad:
        raise ValueError(f"unsupported figure format(s) {', '.join(bad)} (supported: {', '.join(sorted(supported))})")
    return list(dict.fromkeys(out))


def summary_markdown(df: pd.DataFrame, *, source: str = "", formats: Sequence[str] = ("png", "svg")) -> str:
    """The text of ``summary.md`` for a table read by :func:`read_table`.

    One row per (strategy, model, digits-per-node, share-ratio) group: runs
    (cells), distinct seeds, final accuracy as mean ± sample std over runs of
    each run's node mean (just the mean for a single run), the smallest final
    node accuracy, the mean node leakage and the total leakage (sum over a
    run's nodes, averaged over runs: the figure the original study plotted).
    """
    data = _prepare(df)
    groups = _group_stats(data)
    lines = ["# flower-dl results summary", ""]
    n_cells = data["cell"].nunique()
    rounds = data["round"].max()
    src = f"`{source}`: " if source else ""
    lines.append(
        f"{src}{n_cells} run(s), {len(data)} rows, up to {_fmt_num(rounds)} round(s). "
        "Final accuracy is taken at each run's last round; a run's accuracy is the mean "
        "over its nodes."
    )
    lines.append("")
    lines.append(
        "| strategy | model | digits-per-node | share-ratio | runs | seeds "
        "| final accuracy (mean ± std) | min node accuracy | mean leakage | total leakage |"
    )
    lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for _, r in groups.iterrows():
        acc = _fmt_pct(r["acc"])
        if r["runs"] > 1 and not _isnan(r["acc-std"]):
            acc += f" ± {_fmt_pct(r['acc-std'])}"
        lines.append(
            f"| {_strategy_label(r['strategy'])} | {r['model']} | {_fmt_num(r['digits-per-node'])} "
            f"| {_fmt_num(r['share-ratio'])} | {int(r['runs'])} | {int(r['seeds'])} | {acc} "
            f"| {_fmt_pct(r['acc-min'])} | {_fmt_leak(r['leakage'])} | {_fmt_leak(r['leakage-total'])} |"
        )
    lines.append("")
    varying = []
    by_group = data.groupby(list(GROUP_COLUMNS), dropna=False)
    for col in CONFIG_COLUMNS:
        if data[col].notna().any() and by_group[col].nunique().max() > 1:
            vals = [
                _fmt_num(v) if isinstance(v, (int, float, np.floating)) else str(v)
                for v in _uniques(data[col].dropna())
            ]
            varying.append(f"{col} ({', '.join(vals)})")
    if varying:
        lines.append("Groups average over differing " + "; ".join(varying) + ".")
        lines.append("")
    n_failed = int(df["failed"].astype(bool).sum())
    if n_failed:
        lines.append(f"{n_failed} failed node-round(s) are left out of the accuracy statistics.")
        lines.append("")
    if formats:
        links = ", ".join(f"[{base}]({base}.{formats[0]})" for base in FIGURES)
        lines.append(f"Figures ({', '.join(formats)}): {links}.")
    else:
        lines.append("Figures: none requested.")
    return "\n".join(lines) + "\n"


def write_report(
    table_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    formats: str | Sequence[str] = ("png", "svg"),
) -> list[Path]:
    """Write every figure of :data:`FIGURES` in every format, and ``summary.md``.

    Parameters
    ----------
    table_path : str or os.PathLike
        The sweep's results table (``.csv`` or ``.xlsx``, see :func:`read_table`).
    out_dir : str or os.PathLike
        Folder for ``<figure>.<format>`` and ``summary.md`` (created if needed);
        every file is written atomically.
    formats : str or sequence of str
        Figure formats matplotlib can write (default ``("png", "svg")``).

    Returns
    -------
    list[pathlib.Path]
        The paths written: the figures in :data:`FIGURES` order (formats
        inner), then ``summary.md``.

    Raises
    ------
    ValueError
        On a bad table (see :func:`read_table`) or an unsupported format.
    """
    fmts = _check_formats(formats)
    df = read_table(table_path)
    data = _prepare(df)
    groups = _group_stats(data)
    leak = _leakage_stats(data)
    makers = {
        "accuracy-vs-share-ratio": lambda: _fig_accuracy_vs_share_ratio(data, groups),
        "accuracy-vs-digits": lambda: _fig_accuracy_vs_digits(data, groups),
        "leakage-vs-digits": lambda: _fig_leakage_vs(leak, "digits-per-node", "share-ratio"),
        "leakage-vs-share-ratio": lambda: _fig_leakage_vs(leak, "share-ratio", "digits-per-node"),
        "accuracy-vs-leakage": lambda: _fig_accuracy_vs_leakage(data),
        "learning-curves": lambda: _fig_learning_curves(data),
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for base in FIGURES:
        if not fmts:
            break
        fig = makers[base]()
        for fmt in fmts:
            path = out / f"{base}.{fmt}"
            atomic_write_bytes(path, _render(fig, fmt))
            written.append(path)
    summary = out / "summary.md"
    atomic_write_text(summary, summary_markdown(df, source=str(table_path), formats=fmts))
    written.append(summary)
    return written
