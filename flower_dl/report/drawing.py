"""Drawing helpers shared by the figures of :mod:`flower_dl.report`: matplotlib (Agg) only.

A new Agg figure on a grid of panels (:func:`_figure`), the "no data" note, axis
formatters, one legend per figure, min-max error bars, the colour and line-style
conventions (a colour per strategy or series label, a line style per model),
rendering a figure to bytes and checking the requested formats.  matplotlib is imported inside the
functions, so importing :mod:`flower_dl.report` stays light.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from flower_dl.report.table import _strategy_label, _uniques

_LINESTYLES = ("-", "--", ":", "-.")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


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


def _line_styles(df: pd.DataFrame, by: str = "strategy") -> tuple[list[str], dict[str, Any], list[str], dict[str, str]]:
    """The values of ``by`` (a colour each) and the models (a line style each) of a table."""
    strategies = _uniques(df[by])
    models = _uniques(df["model"])
    styles = {m: _LINESTYLES[i % len(_LINESTYLES)] for i, m in enumerate(models)}
    return strategies, _strategy_colours(strategies), models, styles


def _line_label(strategy: str, model: str, models: Sequence[str]) -> str:
    label = _strategy_label(strategy)
    return f"{label}, {model}" if len(models) > 1 else label


def _series_line_label(series: str, model: str, models: Sequence[str]) -> str:
    """A series label (:func:`flower_dl.report.table._series_labels`), with the model when several are present."""
    return f"{series}, {model}" if len(models) > 1 else series


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


# ----------------------------------------------------------------- rendering
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
