"""The tidy results table and the run folder, written atomically.

A run folder holds:

``config.json``   the full resolved run config, plus the seed, the topology's
                  description and the library versions;
``metrics.csv``   one row per round x node (the tidy table, see :data:`COLUMNS`);
``edges.csv``     one row per directed edge of the exchange phase (``failed`` names
                  the node that failed in the exchange, if any);
``summary.json``  the last round's per-node accuracy, mean/min/max, leakage.

:func:`assemble` makes all of it from what a run measured (the leakage
hook's report and the strategy's per-node history), with no Flower types;
:func:`log_summary` prints the short summary at the end of a run. The folder
is first written under a hidden temporary name beside its final place and
then renamed, so a crash never leaves a half-written run folder.
"""

from __future__ import annotations

import io
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from logging import INFO
from pathlib import Path
from typing import Any

import numpy as np
from flwr.common.logger import log

from flower_dl.files import csv_text, default_mode

COLUMNS: tuple[str, ...] = (
    "round",
    "node",
    "accuracy",
    "loss",
    "train-loss",
    "train-seconds",
    "num-train-examples",
    "leakage",
    "exposed-fraction",
    "nn-distance",
    "mia-auc",
    "mia-tpr-1fpr",
    "consensus-distance",
    "gossip-bytes",
    "failed",
)
"""Columns of ``metrics.csv`` (empty cell = not measured)."""

EDGE_COLUMNS: tuple[str, ...] = (
    "src",
    "dst",
    "samples-sent",
    "new-samples",
    "bytes-sent",
    "kl-sent-vs-exchanged",
    "js-sent-vs-exchanged",
    "label-kl",
    "exposed-fraction",
    "nn-distance",
    "failed",
)


def run_folder_name(run_config: Mapping[str, Any], now: float | None = None) -> str:
    """``run-name`` if set, else ``<strategy>-<model>-k<digits>-share<ratio>-<YYYYmmdd-HHMMSS>``."""
    if run_config.get("run-name"):
        return str(run_config["run-name"])
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    return (
        f"{run_config['strategy']}-{run_config['model']}-k{run_config['digits-per-node']}"
        f"-share{run_config['share-ratio']}-{stamp}"
    )


def write_run_folder(
    results_dir: str | os.PathLike[str],
    name: str,
    *,
    config: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    edges: Sequence[Mapping[str, Any]],
    summary: Mapping[str, Any],
    figures: Mapping[str, bytes] | None = None,
) -> Path:
    """Write a complete run folder atomically and return its path.

    An existing folder of the same name is replaced only once the new one is
    complete (the old one is renamed aside first, then removed).
    """
    root = Path(results_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / name
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}.", suffix=".tmp"))
    os.chmod(tmp, default_mode(directory=True))
    try:
        (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        (tmp / "metrics.csv").write_text(csv_text(rows, COLUMNS))
        (tmp / "edges.csv").write_text(csv_text(edges, EDGE_COLUMNS))
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
        for fname, data in (figures or {}).items():
            (tmp / fname).write_bytes(data)
        old = None
        if final.exists():
            old = root / f".{name}.old-{os.getpid()}"
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def intensity_figure(maps: Mapping[int, Mapping[str, Any]], cfg: Any | None = None) -> bytes:
    """PNG of each node's intensity distributions: original / exchanged / transmitted.

    Like the original study's "image distribution" figures: one row per node,
    one column per distribution.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = ("original", "exchanged", "transmitted")
    nodes = sorted(maps)
    fig, axes = plt.subplots(len(nodes), 3, figsize=(6, 2 * len(nodes)), squeeze=False)
    for r, node in enumerate(nodes):
        for c, kind in enumerate(kinds):
            ax = axes[r][c]
            ax.imshow(maps[node][kind], cmap="viridis")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(kind, fontsize=9)
            if c == 0:
                ax.set_ylabel(f"node {node}", fontsize=9)
    if cfg is not None:
        fig.suptitle(
            f"pixel-intensity distributions, k={cfg.digits_per_node}, share-ratio={cfg.share_ratio}",
            fontsize=9,
        )
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


# ----------------------------------------------------------------- assembly
@dataclass(frozen=True)
class RunResults:
    """Everything a run folder holds, before it is written."""

    config: dict[str, Any]
    rows: list[dict[str, Any]]
    edges: list[dict[str, Any]]
    summary: dict[str, Any]
    figures: dict[str, bytes] = field(default_factory=dict)


def metrics_rows(
    num_rounds: int,
    num_nodes: int,
    columns: Mapping[tuple[int, int], Mapping[str, Any]],
    consensus: Mapping[int, float],
    failures: Sequence[Mapping[str, Any]],
    leakage: Mapping[int, float],
    per_node: Mapping[str, Mapping[int, float]] | None = None,
) -> list[dict[str, Any]]:
    """The tidy table: one row per round x node, in that order (empty cells: not measured).

    ``per_node``: column -> node -> value, for the columns that are one value
    per node for the whole run (``exposed-fraction``, ``nn-distance``), like ``leakage``.
    """
    failed_train = {(f["round"], f["node"]) for f in failures if f["stage"] == "train"}
    rows = []
    for rnd in range(1, num_rounds + 1):
        for node in range(num_nodes):
            row: dict[str, Any] = {"round": rnd, "node": node, **columns.get((rnd, node), {})}
            row["leakage"] = leakage[node]
            for column, values in (per_node or {}).items():
                row[column] = values.get(node)
            row["consensus-distance"] = consensus.get(rnd)
            row["failed"] = int((rnd, node) in failed_train)
            rows.append(row)
    return rows


def summary_of(
    rows: Sequence[Mapping[str, Any]],
    num_rounds: int,
    leakage: Mapping[int, float],
    failures: Sequence[Mapping[str, Any]],
    wall_time_s: float,
) -> dict[str, Any]:
    """``summary.json``: the last round's per-node accuracy and its mean/min/max, leakage, bytes, failures.

    ``gossip-bytes-total`` sums the ``gossip-bytes`` column: every byte the
    nodes would have sent in training (model exchange, not the data exchange
    phase, whose bytes are in ``edges.csv``).
    """
    final = {r["node"]: r.get("accuracy") for r in rows if r["round"] == num_rounds}
    last = [a for a in final.values() if a is not None]
    return {
        "rounds": num_rounds,
        "accuracy": final,
        "accuracy-mean": float(np.mean(last)) if last else None,
        "accuracy-min": float(np.min(last)) if last else None,
        "accuracy-max": float(np.max(last)) if last else None,
        "leakage": {k: (None if np.isnan(v) else v) for k, v in leakage.items()},
        "leakage-mean": float(np.nanmean(list(leakage.values()))),
        **_final_means(rows, num_rounds, ("mia-auc", "mia-tpr-1fpr")),
        **_per_node_columns(rows, ("exposed-fraction", "nn-distance")),
        "gossip-bytes-total": int(sum(r.get("gossip-bytes") or 0 for r in rows)),
        "failures": list(failures),
        "wall-time-s": wall_time_s,
    }


def _final_means(rows: Sequence[Mapping[str, Any]], num_rounds: int, columns: Sequence[str]) -> dict[str, Any]:
    """``<column>``: the last round's value per node, and ``<column>-mean``, for columns measured per round."""
    out: dict[str, Any] = {}
    for column in columns:
        final = {r["node"]: r.get(column) for r in rows if r["round"] == num_rounds}
        values = [v for v in final.values() if v is not None]
        if values:
            out[column], out[f"{column}-mean"] = final, float(np.mean(values))
    return out


def _per_node_columns(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> dict[str, Any]:
    """``<column>`` per node and ``<column>-mean``, for columns that hold one value per node for the run."""
    out: dict[str, Any] = {}
    for column in columns:
        values = {r["node"]: r.get(column) for r in rows if r["round"] == 1}
        known = [v for v in values.values() if v is not None]
        if known:
            out[column], out[f"{column}-mean"] = values, float(np.mean(known))
    return out


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries a result depends on."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("flower-dl", "flwr", "torch", "torchvision", "numpy", "scipy", "networkx", "flwr-datasets"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def log_summary(strategy: str, model: str, summary: Mapping[str, Any], folder: Path) -> None:
    """The short summary printed at the end of a run (per node, then the mean)."""
    log(INFO, "")
    log(INFO, "flower-dl summary (%s, %s, %d rounds):", strategy, model, summary["rounds"])
    for node, acc in summary["accuracy"].items():
        leak = summary["leakage"][node]
        log(INFO, "  node %d: accuracy %s, leakage %s", node, "n/a" if acc is None else f"{acc:.4f}",
            "n/a" if leak is None else f"{leak:.6f}")  # fmt: skip
    if summary["accuracy-mean"] is not None:
        log(INFO, "  mean accuracy %.4f (min %.4f, max %.4f)",
            summary["accuracy-mean"], summary["accuracy-min"], summary["accuracy-max"])  # fmt: skip
    log(INFO, "results written to %s", folder.resolve())
