"""The tidy results table and the run folder, written atomically.

A run folder holds:

``config.json``   the full resolved run config, plus the seed, the topology's
                  description and the library versions;
``metrics.csv``   one row per round x node (the tidy table, see :data:`COLUMNS`);
``edges.csv``     one row per directed edge of the exchange phase (``failed`` names
                  the node that failed in the exchange, if any);
``summary.json``  the last round's per-node accuracy, mean/min/max, leakage.

The folder is first written under a hidden temporary name beside its final
place and then renamed, so a crash never leaves a half-written run folder.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

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
    "consensus-distance",
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
