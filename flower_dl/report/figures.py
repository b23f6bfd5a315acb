"""The figures of :mod:`flower_dl.report`, and :data:`FIGURE_MAKERS`, the list of them.

A figure is a function ``_fig_<name>(t: Tables) -> Plot`` whose docstring
says what it shows; it draws with the methods of
:class:`~flower_dl.report.drawing.Plot`, which record every number drawn,
so that the figure's CSV (:attr:`Plot.points`) is exactly what it plots.
:data:`FIGURE_MAKERS` maps each figure's base name (its files are
``<base>.<format>`` and ``<base>.csv``) to that function, in the order
:func:`flower_dl.report.write_report` writes them and ``summary.md`` links
them. The functions live in :mod:`flower_dl.report.figures_accuracy` and
:mod:`flower_dl.report.figures_privacy`, what they draw from
(:class:`~flower_dl.report.figure_data.Tables`) in
:mod:`flower_dl.report.figure_data`. To add a figure: write the function
(with the helpers of :mod:`flower_dl.report.drawing`) and add one entry to
:data:`FIGURE_MAKERS`.

Every line, colour or point of a figure is one configuration or one ``line``
(every varying key but the seed and the data settings, see
:mod:`flower_dl.report.labels`), so that runs that differ in anything but
their seed are never drawn as one; where a figure pools or averages over
keys by design (the points of one colour span several data settings, the
mechanism means span the algorithms), its title names them with their
values (:func:`flower_dl.report.table._averaged_over`). A figure whose
x-axis would show a single value, or nothing, is not drawn
(:func:`not_drawn`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from flower_dl.report.drawing import (
    Plot,
)
from flower_dl.report.figure_data import Tables
from flower_dl.report.figures_accuracy import (
    _fig_accuracy_vs_digits,
    _fig_accuracy_vs_gossip_bytes,
    _fig_accuracy_vs_share_ratio,
    _fig_learning_curves,
)
from flower_dl.report.figures_privacy import (
    _fig_accuracy_vs_epsilon,
    _fig_accuracy_vs_identified,
    _fig_accuracy_vs_leakage,
    _fig_accuracy_vs_leakage_by_mechanism,
    _fig_accuracy_vs_mia_auc,
    _fig_leakage_vs,
    _fig_pareto_by_strategy,
)
from flower_dl.report.values import _fmt_value, _uniques


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
