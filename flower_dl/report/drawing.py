"""Drawing helpers shared by the figures of :mod:`flower_dl.report`: matplotlib (Agg) only.

A new Agg figure on a grid of panels (:func:`_figure`), :class:`Plot`, which
draws lines, error bars, bands and points and records every number it draws
(the figure's CSV is those records, so that it holds exactly what is
plotted), the "no data" note, axis formatters, one legend per figure, the
colour and line-style conventions (a colour per line, a line style or marker
per model), rendering a figure to bytes and checking the requested formats.
matplotlib is imported inside the functions, so importing
:mod:`flower_dl.report` stays light.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from flower_dl.report.values import _uniques

_LINESTYLES = ("-", "--", ":", "-.")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")

POINT_COLUMNS: tuple[str, ...] = (
    "panel",
    "series",
    "element",
    "x",
    "y",
    "y-low",
    "y-high",
    "x-quantity",
    "y-quantity",
)
"""Columns of a figure's CSV: one row per plotted point. ``panel`` is the panel's title (empty in a
one-panel figure), ``series`` the legend entry, ``element`` what the point is (``mean``, ``node``,
``Pareto front``, ...); ``y-low`` and ``y-high`` are the drawn error bar or band (empty where none);
the quantities are the axis labels, in the units of ``x`` and ``y``."""

DATA_GID = "data"
"""The gid of every artist that draws recorded points (``x``, ``y``)."""

BOUNDS_GID = "bounds"
"""The gid of the error bars and bands (``y-low``, ``y-high``)."""

REFERENCE_GID = "reference"
"""The gid of reference lines that are not data (the chance line of an AUC axis)."""


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


@dataclass
class Plot:
    """A figure being drawn, and every number drawn on it.

    Each drawing method draws on one axes and records one row per point
    (:data:`POINT_COLUMNS`), so that :attr:`points`, the figure's CSV, is
    made from the very arrays handed to matplotlib. Every data artist gets
    the gid :data:`DATA_GID` (error bars and bands :data:`BOUNDS_GID`), so
    that a test can read the drawn numbers back off the artists.

    Attributes
    ----------
    figure : matplotlib.figure.Figure
        The figure.
    x_name : str
        What the x-axis shows, for the reason a figure with one x value is
        not drawn (``"digits-per-node"``).
    no_data : str
        Why the figure has no points, where it has none (``"no gossip bytes recorded"``).
    """

    figure: Any
    x_name: str
    no_data: str
    _rows: list[dict[str, Any]] = field(default_factory=list)

    def _record(self, ax: Any, panel: str, series: str, element: str, x: Any, y: Any, lo: Any, hi: Any) -> None:
        for xi, yi, li, hi_ in zip(x, y, lo, hi):
            row = {"panel": panel, "series": series, "element": element, "x": xi, "y": yi, "y-low": li, "y-high": hi_}
            self._rows.append({**row, "_ax": ax})

    def errorbar(self, ax: Any, x: Any, y: Any, lo: Any, hi: Any, *, panel: str, series: str, **kw: Any) -> None:
        """A line through the means with min-max error bars; points with a NaN x or y are skipped."""
        x, y, lo, hi = _finite_sorted(x, y, lo, hi)
        if not len(x):
            return
        yerr = np.vstack([np.nan_to_num(y - lo), np.nan_to_num(hi - y)]).clip(min=0)
        line, caps, bars = ax.errorbar(x, y, yerr=yerr, capsize=3, marker=kw.pop("marker", "o"), markersize=4, **kw)
        line.set_gid(DATA_GID)
        for artist in (*caps, *bars):
            artist.set_gid(BOUNDS_GID)
        self._record(ax, panel, series, "mean", x, y, y - yerr[0], y + yerr[1])

    def line(
        self,
        ax: Any,
        x: Any,
        y: Any,
        *,
        panel: str,
        series: str,
        lo: Any = None,
        hi: Any = None,
        element: str = "mean",
        **kw: Any,
    ) -> None:
        """A line through ``(x, y)`` (NaN points skipped), with a shaded ``lo``-``hi`` band when given."""
        x, y, lo, hi = _finite_sorted(x, y, lo, hi)
        if not len(x):
            return
        (artist,) = ax.plot(x, y, marker=kw.pop("marker", "o"), markersize=kw.pop("markersize", 3), **kw)
        artist.set_gid(DATA_GID)
        if not np.isnan(lo).all():
            band = ax.fill_between(x, lo, hi, color=kw.get("color"), alpha=0.15, linewidth=0)
            band.set_gid(BOUNDS_GID)
        self._record(ax, panel, series, element, x, y, lo, hi)

    def step(self, ax: Any, x: Any, y: Any, *, panel: str, series: str, element: str, **kw: Any) -> None:
        """A post-step line through ``(x, y)`` with a marker on each point (a Pareto front)."""
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        if not len(x):
            return
        (artist,) = ax.step(x, y, where="post", **kw)
        artist.set_gid(DATA_GID)
        nan = np.full(len(x), np.nan)
        self._record(ax, panel, series, element, x, y, nan, nan)

    def scatter(self, ax: Any, x: Any, y: Any, *, panel: str, series: str, element: str, **kw: Any) -> None:
        """Points at ``(x, y)`` (NaN points skipped)."""
        x, y, _, _ = _finite_sorted(x, y, None, None, sort=False)
        if not len(x):
            return
        ax.scatter(x, y, **kw).set_gid(DATA_GID)
        nan = np.full(len(x), np.nan)
        self._record(ax, panel, series, element, x, y, nan, nan)

    @property
    def points(self) -> pd.DataFrame:
        """Every recorded point (:data:`POINT_COLUMNS`), with its axes' labels as the quantities."""
        rows = [
            {**{k: v for k, v in r.items() if k != "_ax"}, **_quantities(r["_ax"])}
            for r in self._rows  # labels are read now: a figure sets them after drawing
        ]
        return pd.DataFrame(rows, columns=list(POINT_COLUMNS))


def _quantities(ax: Any) -> dict[str, str]:
    """The axis labels of ``ax`` as the CSV's quantities; a percent axis holds fractions."""
    return {
        "x-quantity": ax.get_xlabel().replace("(%)", "(fraction; the axis shows %)"),
        "y-quantity": ax.get_ylabel().replace("(%)", "(fraction; the axis shows %)"),
    }


def _finite_sorted(x: Any, y: Any, lo: Any, hi: Any, *, sort: bool = True) -> tuple[np.ndarray, ...]:
    """``x``, ``y``, ``lo``, ``hi`` as floats without the points where x or y is NaN, sorted by x (stably)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    lo = np.full(len(x), np.nan) if lo is None else np.asarray(lo, dtype=float)
    hi = np.full(len(x), np.nan) if hi is None else np.asarray(hi, dtype=float)
    ok = ~(np.isnan(x) | np.isnan(y))
    x, y, lo, hi = x[ok], y[ok], lo[ok], hi[ok]
    order = np.argsort(x, kind="stable") if sort else np.arange(len(x))
    return x[order], y[order], lo[order], hi[order]


def _no_data(ax: Any, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="0.4", fontsize=9, wrap=True)


def _percent_axis(ax: Any, axis: str = "y") -> None:
    """Ticks in percent of a fraction axis, without the sign (the label says ``(%)``)."""
    from matplotlib.ticker import PercentFormatter

    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(PercentFormatter(1.0, symbol=""))


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


@dataclass(frozen=True)
class Line:
    """One line (or colour) of a figure: a ``line`` key of :func:`flower_dl.report.labels._run_labels`.

    Attributes
    ----------
    key : str
        The runs' ``line`` key: every varying key but the seed and the data settings.
    label : str
        Its ``line-label``, the legend entry.
    model : str
        Its model (for the line style or marker).
    colour, style, marker : Any
        How it is drawn.
    """

    key: str
    label: str
    model: str
    colour: Any
    style: str
    marker: str


def _lines(df: pd.DataFrame) -> list[Line]:
    """The lines of a figure drawn from ``df`` (any frame with ``line``, ``line-label`` and ``model``), in its order.

    A colour per line; a line style and a marker per model, so that the
    models of one algorithm read as one family.
    """
    first = df.drop_duplicates("line")
    models = _uniques(df["model"])
    colours = _series_colours(len(first))
    return [
        Line(
            key=key,
            label=label,
            model=model,
            colour=colour,
            style=_LINESTYLES[models.index(model) % len(_LINESTYLES)],
            marker=_MARKERS[models.index(model) % len(_MARKERS)],
        )
        for (key, label, model), colour in zip(first[["line", "line-label", "model"]].itertuples(index=False), colours)
    ]


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
