"""``summary.md`` of :mod:`flower_dl.report`: one Markdown table row per group of runs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from flower_dl.report.figures import FIGURES
from flower_dl.report.table import (
    CONFIG_COLUMNS,
    GROUP_COLUMNS,
    _fmt_leak,
    _fmt_num,
    _fmt_pct,
    _group_stats,
    _isnan,
    _prepare,
    _strategy_label,
    _uniques,
)


def summary_markdown(df: pd.DataFrame, *, source: str = "", formats: Sequence[str] = ("png", "svg")) -> str:
    """The text of ``summary.md`` for a table read by :func:`flower_dl.report.read_table`.

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
