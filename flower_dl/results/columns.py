"""The columns of flower-dl's tables: a run's ``metrics.csv`` and ``edges.csv``, and a sweep's results table.

They live here, beside neither the code that runs sweeps nor the code that
draws figures, so that both read one definition and reading a table imports
no launcher.

A sweep's results table holds one row per run x round x node:

* ``cell``, the run's id (:func:`flower_dl.config.config_id`);
* :data:`CONFIG_COLUMNS`: **every** run-config key but the output locations
  (:data:`flower_dl.config.OUTPUT_KEYS`), derived from
  :class:`flower_dl.config.RunConfig`, so that a key added to the run config
  is a column from then on and a sweep over it can never merge its values;
* :data:`PROVENANCE_COLUMNS`: which code, libraries, machine and data made
  the row (``device`` per node, the rest per run);
* :data:`METRIC_COLUMNS`: the run's ``metrics.csv`` columns.
"""

from __future__ import annotations

from dataclasses import fields

from flower_dl.config import OUTPUT_KEYS, RunConfig

METRIC_COLUMNS: tuple[str, ...] = (
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
    "mia-tpr-0.1fpr",
    "rmia-auc",
    "rmia-tpr-1fpr",
    "rmia-tpr-0.1fpr",
    "sent-mia-auc",
    "sent-mia-tpr-1fpr",
    "sent-mia-tpr-0.1fpr",
    "sent-rmia-auc",
    "sent-rmia-tpr-1fpr",
    "sent-rmia-tpr-0.1fpr",
    "dp-epsilon",
    "central-dp-epsilon",
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
    "failure",
)
"""Columns of ``edges.csv`` (``failed``: 1 if the edge's source or destination failed in the exchange, else 0;
``failure``: which, in words)."""

_FIRST_CONFIG_COLUMNS: tuple[str, ...] = (
    "seed", "strategy", "model", "dataset", "partitioner", "digits-per-node", "share-ratio", "exchange-mode",
    "topology", "num-nodes", "local-epochs", "num-server-rounds", "mixing-schedule", "gossip-steps", "compression",
    "compression-ratio", "choco-gamma", "exchange-mechanism", "exchange-noise", "mixup-size",
)  # fmt: skip
"""The config columns tables had before every key was one, in their old order (a reader's columns stay put)."""

_RUN_CONFIG_KEYS: tuple[str, ...] = tuple(f.name.replace("_", "-") for f in fields(RunConfig))

CONFIG_COLUMNS: tuple[str, ...] = _FIRST_CONFIG_COLUMNS + tuple(
    k for k in _RUN_CONFIG_KEYS if k not in _FIRST_CONFIG_COLUMNS and k not in OUTPUT_KEYS
)
"""Every run-config key except :data:`~flower_dl.config.OUTPUT_KEYS`: what a run computed is all in its rows."""

PROVENANCE_COLUMNS: tuple[str, ...] = (
    "flower-dl-version",
    "git-commit",
    "python-version",
    "flwr-version",
    "torch-version",
    "numpy-version",
    "platform",
    "device",
    "data-digest",
)
"""What made a row: the code (``git-commit`` ends in ``-dirty`` for a checkout with uncommitted changes, is
empty outside a checkout), the libraries, the machine, the device the node trained on, and a digest of the
run's data (:func:`flower_dl.results.provenance.run_data_digest`)."""

TABLE_COLUMNS: tuple[str, ...] = ("cell", *CONFIG_COLUMNS, *PROVENANCE_COLUMNS, *METRIC_COLUMNS)
"""A sweep's results table, in order."""

TEXT_COLUMNS: tuple[str, ...] = (
    "cell",
    *(f.name.replace("_", "-") for f in fields(RunConfig) if f.type in ("str", "bool") and f.name.replace("_", "-")
      in CONFIG_COLUMNS),
    *PROVENANCE_COLUMNS,
)  # fmt: skip
"""Columns that hold text (or booleans), never coerced to numbers."""

CODE_COLUMNS: tuple[str, ...] = ("flower-dl-version", "git-commit")
"""Provenance columns that name the code: rows that differ in them were made by different code."""
