"""Figures and a Markdown summary from a sweep's tidy results table.

A sweep appends rows to one table (``.csv`` or ``.xlsx``): one row per
run x round x node, with every key of the run's config and its provenance in
every row (see :data:`TABLE_COLUMNS`, defined in :mod:`flower_dl.results.columns`). A
run is identified by its ``cell`` (a config plus a seed).
:func:`write_report` turns such a table into the figures of :data:`FIGURES`
(each in every requested format, with ``<figure>.csv``, the numbers it
plots) and ``summary.md``. The figures are listed, in order, in
:data:`FIGURE_MAKERS` (``figures.py``), each with the function that draws it,
whose docstring says what it shows. A figure whose x-axis would hold one
value, or that has nothing to show, is not written; ``summary.md`` says why.

Only seeds are averaged: every run-config key that varies in the table
(:func:`varying_keys`) keeps its runs apart, in ``summary.md``'s first table
and in every figure, whether or not the report knows the key (see "Grouping"
in :mod:`flower_dl.report.labels`). The parts that average over data settings
by design say so, with the values. Rows of different data (two digests of
one dataset) or code (two ``flower-dl-version`` or ``git-commit`` values)
are refused unless ``allow_mixed`` (:func:`check_provenance`).

Accuracy statistics follow one convention throughout: a run's accuracy is the
mean over its nodes; a group's accuracy is the mean over its runs of that; the
error bars and bands span the smallest to the largest *node* accuracy of the
group. Node-rounds marked ``failed`` are left out of the accuracy statistics.
Leakage is per node and constant over rounds; a node's leakage is the mean of
its non-empty leakage cells.

The figures and the "Per strategy" part of ``summary.md`` name each run's
algorithm by its *series label*: the strategy, plus its mixing schedule,
gossip steps, compression and Choco's ``choco-gamma`` when these vary in the
table (and describe the strategy), e.g. ``"choco, top-k 0.1, gamma 0.5"``;
every other varying key is named in its *setting* (``"lr 0.05"``).
Communication is the ``gossip-bytes`` column (a node's bytes sent for model
exchange in a round).

What a run sent in the exchange phase is its *mechanism label*: ``raw``,
``noise <exchange-noise>``, ``mixup <mixup-size>``, or ``no exchange`` at
share ratio 0 (an empty ``exchange-mechanism`` is ``raw``, what older sweeps
sent). The mechanism figure and the "Per exchange mechanism" part of
``summary.md`` set it against leakage and the privacy columns:
``exposed-fraction`` and ``nn-distance`` (per node for the whole run, like
leakage) and ``mia-auc`` (a membership attack per node and evaluated round,
taken at the last round, like accuracy).

A table without some of these columns (an older one) still reports: a
figure that needs a missing column is not drawn (the summary says it was not
recorded), and the summary writes ``n/a``.

Everything is made from the table alone; only pandas, numpy and matplotlib (Agg)
are used, so this package stays light (no Flower, no torch; matplotlib only when
a figure is drawn).

Layout
------
``table.py``
    :func:`read_table`, :func:`check_provenance`, :func:`varying_keys`,
    :func:`final_rows`, :func:`pareto_front`, the column sets, each run's
    labels and grouping keys, the per-run/per-group/per-node statistics and
    number formatting.
``drawing.py``
    Helpers every figure uses: panels, :class:`~flower_dl.report.drawing.Plot`
    (draws and records every plotted number), legends, colours and line
    styles, rendering to bytes.
``figures.py``
    One function per figure and :data:`FIGURE_MAKERS` (base name -> function),
    from which :data:`FIGURES` follows. To add a figure, write its function
    and add one entry there.
``summary.py``
    :func:`summary_markdown`, the text of ``summary.md``.

Import the public names from :mod:`flower_dl.report` itself.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from flower_dl.report.drawing import POINT_COLUMNS, Plot, _check_formats, _render
from flower_dl.report.figure_data import MAX_LINES, Tables
from flower_dl.report.figures import FIGURE_MAKERS, FIGURES, MAIN_FIGURES, not_drawn
from flower_dl.report.summary import summary_markdown
from flower_dl.report.table import (
    GROUP_COLUMNS,
    NUMERIC_COLUMNS,
    REQUIRED_COLUMNS,
    check_provenance,
    final_rows,
    pareto_front,
    read_table,
    varying_keys,
)
from flower_dl.results.columns import CONFIG_COLUMNS, TABLE_COLUMNS, TEXT_COLUMNS
from flower_dl.results.files import atomic_write_bytes, atomic_write_text

__all__ = [
    "CONFIG_COLUMNS",
    "FIGURES",
    "FIGURE_MAKERS",
    "GROUP_COLUMNS",
    "MAIN_FIGURES",
    "MAX_LINES",
    "NUMERIC_COLUMNS",
    "POINT_COLUMNS",
    "REQUIRED_COLUMNS",
    "TABLE_COLUMNS",
    "TEXT_COLUMNS",
    "Plot",
    "Tables",
    "check_provenance",
    "final_rows",
    "not_drawn",
    "pareto_front",
    "read_table",
    "summary_markdown",
    "varying_keys",
    "write_report",
]


def write_report(
    table_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    formats: str | Sequence[str] = ("png", "svg"),
    *,
    allow_mixed: bool = False,
) -> list[Path]:
    """Write the figures of :data:`FIGURES` worth drawing, in every format with their CSV, and ``summary.md``.

    Parameters
    ----------
    table_path : str or os.PathLike
        The sweep's results table (``.csv`` or ``.xlsx``, see :func:`read_table`).
    out_dir : str or os.PathLike
        Folder for ``<figure>.<format>``, ``<figure>.csv`` and ``summary.md``
        (created if needed); every file is written atomically. The files of
        a figure not drawn this time (left by an earlier report) are removed,
        so that none outlives the summary that says it was not drawn.
    formats : str or sequence of str
        Figure formats matplotlib can write (default ``("png", "svg")``); none
        draws no figure.
    allow_mixed : bool
        Report rows of different data or code side by side (``flower-dl
        report --allow-mixed``); ``summary.md`` then says what is mixed.

    Returns
    -------
    list[pathlib.Path]
        The paths written: for each figure drawn, in :data:`FIGURES` order,
        its formats then its CSV; then ``summary.md``. A figure with nothing
        to show or a single x value (:func:`not_drawn`) is not written;
        ``summary.md`` lists it and why.

    Raises
    ------
    ValueError
        On a bad table (see :func:`read_table`), rows of different data or
        code without ``allow_mixed`` (see :func:`check_provenance`), or an
        unsupported format.
    """
    fmts = _check_formats(formats)
    df = read_table(table_path)
    mixed = check_provenance(df, allow_mixed=allow_mixed, where=f"results table '{Path(table_path)}'")
    tables = Tables.of(df)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    drawn: list[str] = []
    skipped: dict[str, str] = {}
    for base in FIGURES if fmts else ():
        plot = FIGURE_MAKERS[base](tables)
        why = not_drawn(plot)
        if why:
            skipped[base] = why
            for suffix in (*fmts, "csv"):
                (out / f"{base}.{suffix}").unlink(missing_ok=True)
            continue
        for fmt in fmts:
            path = out / f"{base}.{fmt}"
            atomic_write_bytes(path, _render(plot.figure, fmt))
            written.append(path)
        path = out / f"{base}.csv"
        atomic_write_text(path, plot.points.to_csv(index=False))
        written.append(path)
        drawn.append(base)
    summary = out / "summary.md"
    text = summary_markdown(df, source=str(table_path), formats=fmts, drawn=drawn, not_drawn=skipped, mixed=mixed)
    atomic_write_text(summary, text)
    written.append(summary)
    return written
