"""What every strategy hands the ServerApp: per-node results, round by round (no Flower types).

Every flower-dl strategy, Flower's built-in ones included, records into one
:class:`NodeHistory` as its replies arrive: the columns of ``metrics.csv``
per (round, node), each failure (round, node, stage, reason), and the
consensus distance per round. The ServerApp reads it after the run; it never
asks a strategy anything else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from logging import WARNING
from typing import Any

from flwr.common.logger import log


@dataclass
class NodeHistory:
    """Per-node results of a run, filled in by the strategy round by round."""

    columns: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    """``(round, node)`` -> measured columns of ``metrics.csv`` (e.g. ``accuracy``, ``train-loss``)."""
    failures: list[dict[str, Any]] = field(default_factory=list)
    """``{"round", "node", "stage", "reason"}`` for every failed or missing reply."""
    consensus: dict[int, float] = field(default_factory=dict)
    """Round -> mean squared distance of the node models to their average (0: one model)."""
    devices: dict[int, str] = field(default_factory=dict)
    """Node -> the device it last said it trained on (provenance)."""

    def record(self, server_round: int, node: int, columns: dict[str, Any]) -> None:
        """Add measured columns to the row of ``(server_round, node)``."""
        self.columns.setdefault((server_round, node), {}).update(columns)

    def fail(self, server_round: int, node: int, stage: str, reason: str) -> None:
        """Record that ``node``'s reply in ``stage`` (``exchange``, ``train``, ``evaluate``) failed."""
        log(WARNING, "round %d: node %d failed in %s: %s", server_round, node, stage, reason)
        self.failures.append({"round": server_round, "node": node, "stage": stage, "reason": reason})

    def failed(self, server_round: int, node: int, stage: str) -> bool:
        """Whether ``node`` failed in ``stage`` of ``server_round``."""
        return any(f["round"] == server_round and f["node"] == node and f["stage"] == stage for f in self.failures)
