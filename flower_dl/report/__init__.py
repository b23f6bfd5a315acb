"""Figures and a Markdown summary from a sweep's tidy results table.

A sweep appends rows to one table (``.csv`` or ``.xlsx``): one row per
run x round x node, with the run's config in every row (see
:data:`TABLE_COLUMNS`). A run is identified by its ``cell`` (a config plus a
seed). :func:`write_report` turns such a table into the figures of
:data:`FIGURES` (each in every requested format) and ``summary.md``. The
figures are listed, in order, in :data:`FIGURE_MAKERS` (``figures.py``), each
with the function that draws it, whose docstring says what it shows.

Accuracy statistics follow one convention throughout: a run's accuracy is the
mean over its nodes; a group's accuracy is the mean over its runs of that; the
error bars and bands span the smallest to the largest *node* accuracy of the
group. Node-rounds marked ``failed`` are left out of the accuracy statistics.
Leakage is per node and constant over rounds; a node's leakage is the mean of
its non-empty leakage cells.

The per-strategy figures and the "Per strategy" part of ``summary.md`` name
each run's algorithm by its *series label*: the strategy, plus its mixing
schedule, gossip steps, compression and Choco's ``choco-gamma`` when these
vary in the table (and describe the strategy), e.g.
``"choco, top-k 0.1, gamma 0.5"``. Communication is the ``gossip-bytes``
column (a node's bytes sent for model exchange in a round).

What a run sent in the exchange phase is its *mechanism label*: ``raw``,
``noise <exchange-noise>``, ``mixup <mixup-size>``, or ``no exchange`` at
share ratio 0 (an empty ``exchange-mechanism`` is ``raw``, what older sweeps
sent). The mechanism figure and the "Per exchange mechanism" part of
``summary.md`` set it against leakage and the privacy columns:
``exposed-fraction`` and ``nn-distance`` (per node for the whole run, like
leakage) and ``mia-auc`` (a membership attack per node and evaluated round,
taken at the last round, like accuracy).

A table without some of these columns (an older one) still reports: a
figure that needs a missing column says it was not recorded, and the summary
writes ``n/a``.

Everything is made from the table alone; only pandas, numpy and matplotlib (Agg)
are used, so this package stays light (no Flower, no torch; matplotlib only when
a figure is drawn).

Layout
------
``table.py``
    :func:`read_table`, :func:`final_rows`, :func:`pareto_front`, the column
    sets, the per-run/per-group/per-node statistics and number formatting.
``drawing.py``
    Helpers every figure uses: panels, legends, error bars, colours and line
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

from flower_dl.files import atomic_write_bytes, atomic_write_text
from flower_dl.report.drawing import _check_formats, _render
from flower_dl.report.figures import FIGURE_MAKERS, FIGURES, MAX_LINES, Tables
from flower_dl.report.summary import summary_markdown
from flower_dl.report.table import (
    CONFIG_COLUMNS,
    GROUP_COLUMNS,
    NUMERIC_COLUMNS,
    REQUIRED_COLUMNS,
    TABLE_COLUMNS,
    TEXT_COLUMNS,
    final_rows,
    pareto_front,
    read_table,
)

__all__ = [
    "CONFIG_COLUMNS",
    "FIGURES",
    "FIGURE_MAKERS",
    "GROUP_COLUMNS",
    "MAX_LINES",
    "NUMERIC_COLUMNS",
    "REQUIRED_COLUMNS",
    "TABLE_COLUMNS",
    "TEXT_COLUMNS",
    "Tables",
    "final_rows",
    "pareto_front",
    "read_table",
    "summary_markdown",
    "write_report",
]


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
    tables = Tables.of(df)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for base in FIGURES:
        if not fmts:
            break
        fig = FIGURE_MAKERS[base](tables)
        for fmt in fmts:
            path = out / f"{base}.{fmt}"
            atomic_write_bytes(path, _render(fig, fmt))
            written.append(path)
    summary = out / "summary.md"
    atomic_write_text(summary, summary_markdown(df, source=str(table_path), formats=fmts))
    written.append(summary)
    return written
