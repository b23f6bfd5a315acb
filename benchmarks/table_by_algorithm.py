"""README's algorithm and privacy tables from a sweep's results table: mean +- sd over seeds, per group.

    python benchmarks/table_by_algorithm.py TABLE.csv [--by algorithm|mechanism]

A run's accuracy is the mean over its nodes of the last round's accuracy (as
``flower-dl report``); a group's figure is the mean +- sd over its runs (one
run per seed). ``--by algorithm`` groups by strategy, mixing schedule, gossip
steps and Choco's gamma (columns: accuracy, total gossip bytes per run);
``--by mechanism`` by strategy and exchange mechanism (accuracy, KL leakage,
exposed fraction, nn-distance, membership-attack AUC). When a table holds the
same config twice (cells run again after a new run-config key changed the
cell ids), the later cell is kept, so every seed counts once.
"""

from __future__ import annotations

import argparse

import pandas as pd

from flower_dl.report.table import read_table
from flower_dl.sweep import CONFIG_COLUMNS

IDENTITY = ["strategy", "digits-per-node", "share-ratio", "seed"]


def label_algorithm(run: pd.Series) -> str:
    """``decentralized`` / ``decentralized, epidemic`` / ``decentralized, 5 gossip steps`` / ``choco, gamma 0.5``."""
    parts = [run["strategy"]]
    if run["strategy"] in ("decentralized", "gradient-tracking", "choco"):
        if run.get("mixing-schedule", "static") not in ("static", "", None):
            parts.append(str(run["mixing-schedule"]))
        if int(run.get("gossip-steps") or 1) > 1:
            parts.append(f"{int(run['gossip-steps'])} gossip steps")
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


def runs(table: pd.DataFrame, runs_meta: pd.DataFrame) -> pd.DataFrame:
    """One row per run: its config and the figures of its last round."""
    last = table[table["round"] == table["num-server-rounds"]]
    agg = {"accuracy": "mean", "leakage": "mean"}
    for col in ("exposed-fraction", "nn-distance", "mia-auc"):
        if col in last:
            agg[col] = "mean"
    per_run = last.groupby("cell").agg(agg)
    per_run["gossip-bytes"] = table.groupby("cell")["gossip-bytes"].sum()
    return runs_meta.join(per_run, on="cell")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table")
    parser.add_argument("--by", choices=("algorithm", "mechanism"), default="algorithm")
    args = parser.parse_args()
    table = read_table(args.table)
    meta = table.drop_duplicates("cell")[[c for c in CONFIG_COLUMNS if c in table.columns]]
    label = label_algorithm if args.by == "algorithm" else label_mechanism
    meta = meta.assign(group=meta.apply(label, axis=1))
    # the same config twice (older cell ids): keep the last
    meta = meta.drop_duplicates([*IDENTITY, "group"], keep="last")
    per_run = runs(table[table["cell"].isin(meta["cell"])], meta)
    keys = ["digits-per-node", "share-ratio", "group"] if args.by == "algorithm" else ["strategy", "group"]
    figures = ["accuracy", "gossip-bytes"] if args.by == "algorithm" else [
        "accuracy", "leakage", "exposed-fraction", "nn-distance", "mia-auc"]  # fmt: skip
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
            else:
                cells.append(f"{mean:.3f} ± {0 if pd.isna(sd) else sd:.3f}")
        cells.append(str(int(counts.loc[index])))
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
