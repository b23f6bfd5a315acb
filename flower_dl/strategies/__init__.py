"""Strategies, chosen by the run-config key ``strategy``.

``decentralized`` is flower-dl's own (one model per node, mixing matrix W);
every other name maps to one of Flower's built-in strategies, run as the
parameter-server baseline on the same exchanged data. All of them report
per-node metrics through a :class:`MetricsRecorder`, so results tables look
the same whatever the strategy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from flwr.app import MetricRecord, RecordDict
from flwr.serverapp import strategy as fl
from flwr.serverapp.strategy.strategy_utils import aggregate_metricrecords

from flower_dl.config import STRATEGY_NAMES, RunConfig
from flower_dl.strategies.decentralized import Decentralized

PER_NODE_KEYS = ("partition-id", "server-round")
"""Metric keys that identify a reply; recorded, never averaged."""


class MetricsRecorder:
    """Collects every node's metrics per round from the strategies' aggregation hooks."""

    def __init__(self) -> None:
        self.train: dict[tuple[int, int], dict[str, float]] = {}
        self.evaluate: dict[tuple[int, int], dict[str, float]] = {}
        self.failures: list[dict[str, Any]] = []

    def _record(self, store: dict, records: list[RecordDict], weighting_key: str) -> MetricRecord:
        stripped = []
        for rec in records:
            metrics = next(iter(rec.metric_records.values()))
            key = (int(metrics["server-round"]), int(metrics["partition-id"]))
            store[key] = {k: v for k, v in metrics.items() if k not in PER_NODE_KEYS}
            stripped.append(
                RecordDict({"metrics": MetricRecord({k: v for k, v in metrics.items() if k not in PER_NODE_KEYS})})
            )
        return aggregate_metricrecords(stripped, weighting_key)

    def train_aggr(self, records: list[RecordDict], weighting_key: str) -> MetricRecord:
        """``train_metrics_aggr_fn``: record per node, return the weighted mean."""
        return self._record(self.train, records, weighting_key)

    def evaluate_aggr(self, records: list[RecordDict], weighting_key: str) -> MetricRecord:
        """``evaluate_metrics_aggr_fn``: record per node, return the weighted mean."""
        return self._record(self.evaluate, records, weighting_key)

    def on_failure(self, server_round: int, partition_id: int, stage: str, reason: str) -> None:
        """Record a node that failed or did not reply (``reason``: the last line of a traceback)."""
        self.failures.append(
            {"round": server_round, "node": partition_id, "stage": stage, "reason": short_reason(reason)}
        )


def short_reason(reason: str) -> str:
    """The last non-empty line of an error reason (Flower sends whole tracebacks)."""
    lines = [line.strip() for line in str(reason).splitlines() if line.strip()]
    return lines[-1] if lines else "unknown error"


def _flower(cls: type, **extra: Any) -> Callable[..., fl.Strategy]:
    def make(cfg: RunConfig, recorder: MetricsRecorder, **_: Any) -> fl.Strategy:
        n = cfg.num_nodes
        kwargs = {k: (v(cfg) if callable(v) else v) for k, v in extra.items()}
        return cls(
            fraction_train=1.0,
            fraction_evaluate=1.0,
            min_train_nodes=n,
            min_evaluate_nodes=n,
            min_available_nodes=n,
            train_metrics_aggr_fn=recorder.train_aggr,
            evaluate_metrics_aggr_fn=recorder.evaluate_aggr,
            **kwargs,
        )

    return make


def _decentralized(
    cfg: RunConfig, recorder: MetricsRecorder, *, mixing_matrix: np.ndarray, node_ids: Mapping[int, int]
) -> fl.Strategy:
    return Decentralized(
        mixing_matrix,
        node_ids,
        train_metrics_aggr_fn=recorder.train_aggr,
        evaluate_metrics_aggr_fn=recorder.evaluate_aggr,
        on_failure=recorder.on_failure,
    )


REGISTRY: dict[str, Callable[..., fl.Strategy]] = {
    "decentralized": _decentralized,
    "fedavg": _flower(fl.FedAvg),
    "fedprox": _flower(fl.FedProx, proximal_mu=lambda cfg: cfg.proximal_mu),
    "fedavgm": _flower(fl.FedAvgM),
    "fedadam": _flower(fl.FedAdam),
    "fedadagrad": _flower(fl.FedAdagrad),
    "fedyogi": _flower(fl.FedYogi),
    "fedmedian": _flower(fl.FedMedian),
    "fedtrimmedavg": _flower(fl.FedTrimmedAvg),
    "krum": _flower(fl.Krum),
}
assert tuple(REGISTRY) == STRATEGY_NAMES, "config.STRATEGY_NAMES and REGISTRY must agree"


def build_strategy(
    cfg: RunConfig,
    recorder: MetricsRecorder,
    *,
    mixing_matrix: np.ndarray,
    node_ids: Mapping[int, int],
) -> fl.Strategy:
    """The strategy named by ``cfg.strategy``, wired to ``recorder``."""
    return REGISTRY[cfg.strategy](cfg, recorder, mixing_matrix=mixing_matrix, node_ids=node_ids)
