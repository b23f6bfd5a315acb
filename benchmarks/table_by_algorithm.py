"""The docs' algorithm and privacy tables (docs/algorithms.md, privacy-measures.md, privacy.md) from a sweep's results table: mean +- sd over seeds, per group.

    python benchmarks/table_by_algorithm.py TABLE.csv [TABLE.csv ...] [--by algorithm|mechanism|privacy]

A run's accuracy is the mean over its nodes of the last round's accuracy (as
``flower-dl report``); a group's figure is the mean +- sd over its runs (one
run per seed). ``--by algorithm`` groups by strategy, mixing schedule, gossip
steps and Choco's gamma (columns: accuracy, total gossip bytes per run);
``--by mechanism`` by strategy and exchange mechanism (accuracy, KL leakage,
exposed fraction, nn-distance, membership-attack AUC); ``--by privacy`` by
strategy, exchange setting and DP-SGD noise (accuracy, exposed fraction, the
TPR at 1% FPR of the loss-threshold attack and of RMIA on the model each node
sent in the last round, RMIA's AUC, the nodes' DP-SGD epsilon; runs without
DP show ``-``). Several tables are read as one. Any other run-config
key that varies among a group's runs (``lr``, ``batch-size``, a key added
later) becomes a column and a grouping key too, so that only seeds are
averaged; ``--by mechanism`` averages over the data settings by design and
prints which it averaged over. When a table holds the same config twice
(cells run again after a new run-config key changed the cell ids), the later
cell is kept, so every seed counts once; a key the older cells did not record
(empty) does not split them.
"""

from __future__ import annotations

import argparse

import pandas as pd

from flower_dl.report.table import read_table
from flower_dl.results.columns import CONFIG_COLUMNS

IDENTITY = ["strategy", "digits-per-node", "share-ratio", "seed"]
DATA_KEYS = ["digits-per-node", "share-ratio"]


def split_keys(meta: pd.DataFrame, keys: list[str], averaged: list[str]) -> list[str]:
    """Config columns that vary among the runs of one group of ``keys`` (seed and ``averaged`` aside).

    They become grouping keys too, so that a group never averages two
    learning rates (or two values of any key) as if they were seeds; an empty
    cell (an older run that did not record the key) does not count.
    """
    groups = meta.groupby(keys, dropna=False)
    skip = {"seed", *keys, *averaged}
    return [c for c in CONFIG_COLUMNS if c in meta and c not in skip and groups[c].nunique().max() > 1]


def label_algorithm(run: pd.Series) -> str:
    """``decentralized`` / ``decentralized, epidemic`` / ``decentralized, 5 gossip steps`` / ``choco, gamma 0.5``."""
    parts = [run["strategy"]]
    if run["strategy"] in ("decentralized", "gradient-tracking", "choco"):
        schedule, steps = run.get("mixing-schedule"), run.get("gossip-steps")
        if pd.notna(schedule) and schedule not in ("static", ""):
            parts.append(str(schedule))
        if pd.notna(steps) and int(steps) > 1:
            parts.append(f"{int(steps)} gossip steps")
    if run["strategy"] == "choco":
        parts.append(f"top-k {run['compression-ratio']:g}, gamma {run['choco-gamma']:g}")
    return ", ".join(parts)


def label_mechanism(run: pd.Series) -> str:
    """``raw`` / ``noise 0.1`` / ``mixup 4`` (share 0: ``no exchange``)."""
    if float(run["share-ratio"]) == 0:
        return "no exchange (share 0)"
    mech = run.get("exchange-mechanism", "raw") or "raw"
    if mech == "noise":
        return f"noise {run['exchange-noise']:g}"
    if mech == "mixup":
        return f"mixup {int(run['mixup-size'])}"
    return "raw"


def label_privacy(run: pd.Series) -> str:
    """``raw`` / ``mixup 4`` / ``no exchange (share 0)``, then ``no DP`` or ``DP sigma 1``."""
    sigma = run.get("dp-noise-multiplier")
    dp = "no DP" if pd.isna(sigma) or float(sigma) == 0 else f"DP sigma {float(sigma):g}"
    return f"{label_mechanism(run)}, {dp}"


PRIVACY_FIGURES = ["accuracy", "exposed-fraction", "sent-mia-tpr-1fpr", "sent-rmia-tpr-1fpr", "sent-rmia-auc",
                   "dp-epsilon"]  # fmt: skip
LABELS = {"algorithm": label_algorithm, "mechanism": label_mechanism, "privacy": label_privacy}


def runs(table: pd.DataFrame, runs_meta: pd.DataFrame) -> pd.DataFrame:
    """One row per run: its config and the figures of its last round (node means)."""
    last = table[table["round"] == table["num-server-rounds"]]
    agg = {"accuracy": "mean", "leakage": "mean"}
    for col in ("exposed-fraction", "nn-distance", "mia-auc", *PRIVACY_FIGURES[2:]):
        if col in last:
            agg[col] = "mean"
    per_run = last.groupby("cell").agg(agg)
    per_run["gossip-bytes"] = table.groupby("cell")["gossip-bytes"].sum()
    return runs_meta.join(per_run, on="cell")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", nargs="+")
    parser.add_argument("--by", choices=tuple(LABELS), default="algorithm")
    args = parser.parse_args()
    table = pd.concat([read_table(path) for path in args.table], ignore_index=True)
    meta = table.drop_duplicates("cell")[["cell", *(c for c in CONFIG_COLUMNS if c in table.columns)]]
    meta = meta.assign(group=meta.apply(LABELS[args.by], axis=1))
    keys = ["digits-per-node", "share-ratio", "group"] if args.by == "algorithm" else ["strategy", "group"]
    averaged = DATA_KEYS if args.by == "mechanism" else []
    if args.by == "privacy":
        averaged = ["share-ratio", "exchange-mechanism", "dp-noise-multiplier"]  # in the group's label
    keys += split_keys(meta, keys, averaged)
    # the same config twice (older cell ids): keep the last
    meta = meta.drop_duplicates(list(dict.fromkeys([*IDENTITY, *keys])), keep="last")
    per_run = runs(table[table["cell"].isin(meta["cell"])], meta)
    spanned = [c for c in averaged if meta.groupby(keys, dropna=False)[c].nunique().max() > 1]
    if spanned:
        spans = [f"{c} ({', '.join(f'{v:g}' for v in sorted(meta[c].dropna().unique()))})" for c in spanned]
        print("Averaged over " + " and ".join(spans) + ".\n")
    figures = {
        "algorithm": ["accuracy", "gossip-bytes"],
        "mechanism": ["accuracy", "leakage", "exposed-fraction", "nn-distance", "mia-auc"],
        "privacy": PRIVACY_FIGURES,
    }[args.by]
    grouped = per_run.groupby(keys)
    out = grouped[figures].agg(["mean", "std"])
    counts = grouped.size()
    print("| " + " | ".join([*keys, *figures, "runs"]) + " |")
    print("|" + "---|" * (len(keys) + len(figures) + 1))
    for index, row in out.iterrows():
        cells = [str(v) for v in (index if isinstance(index, tuple) else (index,))]
        for fig in figures:
            mean, sd = row[(fig, "mean")], row[(fig, "std")]
            if fig == "gossip-bytes":
                cells.append(f"{mean / 1e6:.1f} MB")
            elif pd.isna(mean):
                cells.append("-")
            elif fig == "dp-epsilon":
                cells.append(f"{mean:.2f} ± {0 if pd.isna(sd) else sd:.2f}")
            else:
                cells.append(f"{mean:.3f} ± {0 if pd.isna(sd) else sd:.3f}")
        cells.append(str(int(counts.loc[index])))
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
