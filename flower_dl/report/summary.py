"""``summary.md`` of :mod:`flower_dl.report`: one Markdown table row per configuration, then one per strategy,
then one per strategy and exchange mechanism; the main figure, the figures drawn and those not drawn, and why."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from flower_dl.report.figures import FIGURES, MAIN_FIGURES
from flower_dl.report.labels import _prepare, _strategy_label
from flower_dl.report.stats import _cell_stats, _group_stats, _mechanism_stats, _series_stats
from flower_dl.report.table import EXCHANGE_KEYS, _averaged_over, _code_versions, _fmt_averaged, varying_keys
from flower_dl.report.values import _fmt_acc, _fmt_bytes, _fmt_dec, _fmt_leak, _fmt_num, _fmt_pct, _fmt_value, _uniques

MAIN_FIGURE_CAPTION = "per-node final accuracy vs leakage, with the Pareto front of the trade-off"


def summary_markdown(
    df: pd.DataFrame,
    *,
    source: str = "",
    formats: Sequence[str] = ("png", "svg"),
    drawn: Sequence[str] | None = None,
    not_drawn: Mapping[str, str] | None = None,
    mixed: Sequence[str] = (),
) -> str:
    """The text of ``summary.md`` for a table read by :func:`flower_dl.report.read_table`.

    Only seeds are averaged. The first table holds one row per configuration
    (every key that varies in the table but the seed: strategy and its
    gossip settings, model, digits-per-node, share ratio, the exchange
    mechanism where it varies, and a ``setting`` column naming every other
    varying key, e.g. ``lr 0.05``): runs (cells), distinct seeds (equal to
    runs unless a configuration ran twice with one seed), final accuracy as
    mean ± sample std over runs of each run's node mean (just the mean for a
    single run), the smallest final node accuracy, the mean node leakage and
    the total leakage (sum over a run's nodes, averaged over runs: the figure
    the original study plotted). The varying keys are listed above it.

    Then, under "Per strategy", one row per algorithm (the series label, see
    :func:`flower_dl.report.labels._series_labels`), model and setting, to
    compare algorithms: runs, final accuracy (mean ± std over runs), mean
    leakage and the total gossip bytes per run (sum over nodes and rounds,
    mean over runs; ``n/a`` where the table has none). It averages over the
    data settings and exchange mechanisms, and its first sentence says which
    of them vary, with their values.

    Last, under "Per exchange mechanism", one row per algorithm, model,
    setting and mechanism label, so that a privatized exchange can be weighed
    against raw sharing by the same algorithm: runs, final accuracy (mean ±
    std over runs), and the means over runs of the run's node means of
    leakage, exposed fraction, nn-distance and final membership-attack AUC
    (``n/a`` where not recorded); its first sentence says which data settings
    it averages over.

    Parameters
    ----------
    df : pandas.DataFrame
        The results table.
    source : str
        The table's path, named in the first line.
    formats : sequence of str
        The figure formats written (links go to the first).
    drawn : sequence of str, optional
        The figures written, in order (default: every one of :data:`FIGURES`).
    not_drawn : mapping of str to str, optional
        Figure -> why it was not drawn (:func:`flower_dl.report.figures.not_drawn`).
    mixed : sequence of str
        What :func:`flower_dl.report.check_provenance` found mixed (reported
        side by side with ``--allow-mixed``).
    """
    data = _prepare(df)
    cells = _cell_stats(data)
    drawn = list(FIGURES if drawn is None else drawn)
    not_drawn = dict(not_drawn or {})
    lines = ["# flower-dl results summary", ""]
    n_cells = data["cell"].nunique()
    src = f"`{source}`: " if source else ""
    lines.append(
        f"{src}{n_cells} run(s), {len(data)} rows, up to {_fmt_num(data['round'].max())} round(s). "
        "Final accuracy is taken at each run's last round; a run's accuracy is the mean "
        "over its nodes. Only seeds are averaged: each row of the first table is one configuration."
    )
    lines.append("")
    varying = varying_keys(data.drop_duplicates("cell"))
    if varying:
        keys = "; ".join(f"{k} ({', '.join(_fmt_value_list(data, k))})" for k in varying)
        lines += [f"Varying keys (each keeps its runs apart): {keys}.", ""]
    code = _code_versions(data)
    if code:
        lines += [f"Code: {code}.", ""]
    if mixed:
        lines += ["**Mixed data or code, reported side by side (--allow-mixed):** " + "; ".join(mixed) + ".", ""]
    main = _main_figure(drawn) if formats else None
    if main:
        caption = f": {MAIN_FIGURE_CAPTION}" if main == MAIN_FIGURES[0] else ""
        lines += [f"Main figure: [{main}]({main}.{formats[0]}){caption}.", ""]
    lines.extend(_main_table(data, cells))
    lines.append("")
    n_failed = int(df["failed"].astype(bool).sum())
    if n_failed:
        lines += [f"{n_failed} failed node-round(s) are left out of the accuracy statistics.", ""]
    lines.extend(_figure_lines(drawn, not_drawn, formats, main, n_cells))
    lines.append("")
    lines.extend(_strategy_section(data, cells))
    lines.append("")
    lines.extend(_mechanism_section(data, cells))
    return "\n".join(lines) + "\n"


def _fmt_value_list(data: pd.DataFrame, key: str) -> list[str]:
    """The distinct values of ``key`` over the table's runs, formatted."""
    return [_fmt_value(v) for v in _uniques(data.drop_duplicates("cell")[key])]


def _main_figure(drawn: Sequence[str]) -> str | None:
    """The main figure: the first of :data:`MAIN_FIGURES` that was drawn, else the first drawn (None: none)."""
    return next((f for f in MAIN_FIGURES if f in drawn), drawn[0] if drawn else None)


def _main_table(data: pd.DataFrame, cells: pd.DataFrame) -> list[str]:
    """The first table of ``summary.md``: one row per configuration (see :func:`summary_markdown`)."""
    groups = _group_stats(data, cells)
    cells = data.drop_duplicates("cell")
    show_exchange = any(k in varying_keys(cells) for k in EXCHANGE_KEYS)
    show_setting = bool((groups["setting"] != "").any())
    head = ["strategy", "model", "digits-per-node", "share-ratio"]
    head += ["exchange"] * show_exchange + ["setting"] * show_setting
    head += ["runs", "seeds", "final accuracy (mean ± std)", "min node accuracy", "mean leakage", "total leakage"]
    align = ["---", "---", "---:", "---:"] + ["---"] * (show_exchange + show_setting) + ["---:"] * 6
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    for _, r in groups.iterrows():
        cells_ = [
            _strategy_label(r["strategy"]) + _series_tail(r["strategy"], r["series"]),
            r["model"],
            _fmt_num(r["digits-per-node"]),
            _fmt_num(r["share-ratio"]),
        ]
        cells_ += [r["mechanism"]] * show_exchange + [r["setting"]] * show_setting
        cells_ += [
            str(int(r["runs"])),
            str(int(r["seeds"])),
            _fmt_acc(r["acc"], r["acc-std"], r["runs"]),
            _fmt_pct(r["acc-min"]),
            _fmt_leak(r["leakage"]),
            _fmt_leak(r["leakage-total"]),
        ]
        lines.append("| " + " | ".join(cells_) + " |")
    return lines


def _series_tail(strategy: str, series: str) -> str:
    """``", epidemic"`` of ``"decentralized, epidemic"``: what the series label adds to the strategy."""
    return series[len(strategy) :] if series.startswith(strategy) else f" ({series})"


def _figure_lines(
    drawn: Sequence[str], not_drawn: Mapping[str, str], formats: Sequence[str], main: str | None, n_cells: int
) -> list[str]:
    """The figures written (the main one first), those not drawn and why, and what a one-run table can show."""
    if not formats:
        return ["Figures: none requested."]
    lines = []
    if drawn:
        order = [main, *(f for f in drawn if f != main)]
        links = ", ".join(f"[{base}]({base}.{formats[0]})" for base in order)
        lines.append(f"Figures ({', '.join(formats)}; the numbers each plots in `<figure>.csv`): {links}.")
    else:
        lines.append("Figures: none could be drawn from this table.")
    if n_cells == 1:
        lines += [
            "",
            "This table holds one run (one cell): the report could draw "
            + (", ".join(drawn) if drawn else "no figure")
            + "; figures that compare settings need cells at two or more values of their x-axis"
            + (" (below)." if not_drawn else "."),
        ]
    if not_drawn:
        lines += ["", "Not drawn:", ""]
        lines += [f"- {base}: {why}." for base, why in not_drawn.items()]
    return lines


def _averaged_sentence(data: pd.DataFrame, by: str | Sequence[str]) -> list[str]:
    """``["Averaged over digits-per-node (2, 5) and share-ratio (0, 0.2).", ""]``, or nothing when a row of ``by``
    is one configuration."""
    items = _averaged_over(data, by)
    return [f"Averaged over {_fmt_averaged(items)}.", ""] if items else []


def _strategy_section(data: pd.DataFrame, cells: pd.DataFrame) -> list[str]:
    """The "Per strategy" lines of ``summary.md`` (see :func:`summary_markdown`)."""
    stats = _series_stats(data, cells)
    show_setting = bool((stats["setting"] != "").any())
    lines = ["## Per strategy", "", *_averaged_sentence(data, "algorithm")]
    lines += [
        "One row per strategy (with its mixing schedule, gossip steps, compression and Choco's gamma where "
        "they vary), model and any other setting that varies, over its data settings and exchange mechanisms. "
        "Gossip bytes per run: the sum over its nodes and rounds of the bytes sent for model "
        "exchange (a parameter server's: the uploads), averaged over runs.",
        "",
        "| strategy | model | " + "setting | " * show_setting + "runs | final accuracy (mean ± std) "
        "| mean leakage | gossip bytes per run |",
        "|---|---|" + "---|" * show_setting + "---:|---:|---:|---:|",
    ]
    for _, r in stats.iterrows():
        setting = f" {r['setting']} |" if show_setting else ""
        lines.append(
            f"| {r['series']} | {r['model']} |{setting} {int(r['runs'])} "
            f"| {_fmt_acc(r['acc'], r['acc-std'], r['runs'])} "
            f"| {_fmt_leak(r['leakage'])} | {_fmt_bytes(r['gossip-bytes'])} |"
        )
    return lines


def _mechanism_section(data: pd.DataFrame, cells: pd.DataFrame) -> list[str]:
    """The "Per exchange mechanism" lines of ``summary.md`` (see :func:`summary_markdown`)."""
    stats = _mechanism_stats(data, cells)
    show_setting = bool((stats["setting"] != "").any())
    lines = ["## Per exchange mechanism", "", *_averaged_sentence(data, ["line", "mechanism"])]
    lines += [
        "Each strategy's runs by what they sent in the exchange phase: no exchange (share ratio 0), "
        "raw samples, noised samples (`noise <std>`) or class means (`mixup <images per mean>`). "
        "Exposed fraction: of a node's samples, those another node received; nn-distance: RMS pixel "
        "distance of what a node sent to its nearest own image (0 for copies); MIA AUC: a "
        "loss-threshold membership attack on each node's final model (0.5: chance). Each is the "
        "mean over a run's nodes, averaged over runs.",
        "",
        "| strategy | model | exchange | " + "setting | " * show_setting + "runs | final accuracy (mean ± std) "
        "| mean leakage | mean exposed fraction | mean nn-distance | mean final MIA AUC |",
        "|---|---|---|" + "---|" * show_setting + "---:|---:|---:|---:|---:|---:|",
    ]
    for _, r in stats.iterrows():
        setting = f" {r['setting']} |" if show_setting else ""
        lines.append(
            f"| {r['series']} | {r['model']} | {r['mechanism']} |{setting} {int(r['runs'])} "
            f"| {_fmt_acc(r['acc'], r['acc-std'], r['runs'])} | {_fmt_leak(r['leakage'])} "
            f"| {_fmt_pct(r['exposed-fraction'])} | {_fmt_dec(r['nn-distance'])} | {_fmt_dec(r['mia-auc'])} |"
        )
    return lines
