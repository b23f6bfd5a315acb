"""``summary.md`` of :mod:`flower_dl.report`: one Markdown table row per group of runs, then one per strategy,
then one per strategy and exchange mechanism."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from flower_dl.report.figures import FIGURES
from flower_dl.report.table import (
    CONFIG_COLUMNS,
    GROUP_COLUMNS,
    _fmt_acc,
    _fmt_bytes,
    _fmt_dec,
    _fmt_leak,
    _fmt_num,
    _fmt_pct,
    _group_stats,
    _mechanism_stats,
    _prepare,
    _series_stats,
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

    Then, under "Per strategy", one row per series (the strategy, plus the
    gossip settings that vary in the table, see
    :func:`flower_dl.report.table._series_labels`) and model, over all its
    runs whatever their data setting, to compare algorithms: runs, final
    accuracy (mean ± std over runs), mean leakage and the total gossip bytes
    per run (sum over nodes and rounds, mean over runs; ``n/a`` where the
    table has none).

    Last, under "Per exchange mechanism", one row per series, model and
    mechanism label (:func:`flower_dl.report.table._mechanism_labels`), so
    that a privatized exchange can be weighed against raw sharing by the same
    algorithm: runs, final accuracy (mean ± std over runs), and the means over
    runs of the run's node means of leakage, exposed fraction, nn-distance and
    final membership-attack AUC (``n/a`` where not recorded).
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
        acc = _fmt_acc(r["acc"], r["acc-std"], r["runs"])
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
    lines.append("")
    lines.extend(_strategy_section(data))
    lines.append("")
    lines.extend(_mechanism_section(data))
    return "\n".join(lines) + "\n"


def _strategy_section(data: pd.DataFrame) -> list[str]:
    """The "Per strategy" lines of ``summary.md`` (see :func:`summary_markdown`)."""
    lines = [
        "## Per strategy",
        "",
        "Each strategy's runs over every digits-per-node and share ratio; a strategy's "
        "mixing schedule, gossip steps, compression and Choco's gamma are named when they vary in the table. "
        "Gossip bytes per run: the sum over its nodes and rounds of the bytes sent for model "
        "exchange (a parameter server's: the uploads), averaged over runs.",
        "",
        "| strategy | model | runs | final accuracy (mean ± std) | mean leakage | gossip bytes per run |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for _, r in _series_stats(data).iterrows():
        lines.append(
            f"| {r['series']} | {r['model']} | {int(r['runs'])} | {_fmt_acc(r['acc'], r['acc-std'], r['runs'])} "
            f"| {_fmt_leak(r['leakage'])} | {_fmt_bytes(r['gossip-bytes'])} |"
        )
    return lines


def _mechanism_section(data: pd.DataFrame) -> list[str]:
    """The "Per exchange mechanism" lines of ``summary.md`` (see :func:`summary_markdown`)."""
    lines = [
        "## Per exchange mechanism",
        "",
        "Each strategy's runs by what they sent in the exchange phase: no exchange (share ratio 0), "
        "raw samples, noised samples (`noise <std>`) or class means (`mixup <images per mean>`). "
        "Exposed fraction: of a node's samples, those another node received; nn-distance: RMS pixel "
        "distance of what a node sent to its nearest own image (0 for copies); MIA AUC: a "
        "loss-threshold membership attack on each node's final model (0.5: chance). Each is the "
        "mean over a run's nodes, averaged over runs.",
        "",
        "| strategy | model | exchange | runs | final accuracy (mean ± std) | mean leakage "
        "| mean exposed fraction | mean nn-distance | mean final MIA AUC |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for _, r in _mechanism_stats(data).iterrows():
        lines.append(
            f"| {r['series']} | {r['model']} | {r['mechanism']} | {int(r['runs'])} "
            f"| {_fmt_acc(r['acc'], r['acc-std'], r['runs'])} | {_fmt_leak(r['leakage'])} "
            f"| {_fmt_pct(r['exposed-fraction'])} | {_fmt_dec(r['nn-distance'])} | {_fmt_dec(r['mia-auc'])} |"
        )
    return lines
