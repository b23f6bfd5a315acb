"""Flower's built-in strategies as flower-dl's parameter-server baselines.

Each of Flower's strategies (``FedAvg``, ``FedProx``, ...) is run unchanged,
with one mixin in front of it, :class:`ParameterServer`: it adds the run
config to every message, and before handing the replies to Flower's own
aggregation it records each node's metrics and each failed or missing reply
in the strategy's :class:`~flower_dl.strategies.history.NodeHistory`, as
flower-dl's decentralized strategies do (Flower's own strategies only log a
failure and drop it). Every node holds the one global model, so the consensus
distance is 0; a node's ``gossip-bytes`` is its upload, the trained model.
"""

from __future__ import annotations

from collections.abc import Iterable

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp import strategy as fl

from flower_dl import protocol
from flower_dl.strategies.base import PerNode


class ParameterServer(PerNode):
    """Mixin in front of one of Flower's strategies: per-node history and run config, nothing else."""

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        config = self.train_config(server_round, config)
        return self.stamped(super().configure_train(server_round, arrays, config, grid))  # type: ignore[misc]

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        if not self.evaluation.evaluate_message(server_round):
            return []
        return self.stamped(super().configure_evaluate(server_round, arrays, config, grid))  # type: ignore[misc]

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        got = self.collect_train(server_round, replies)
        self.history.consensus[server_round] = 0.0  # one model, held by every node
        for pid in self.node_ids:  # a node's communication is its upload (none when its reply was lost)
            nbytes = protocol.arrays_nbytes(protocol.reply_arrays(got[pid])) if pid in got else 0
            self.history.record(server_round, pid, {"gossip-bytes": nbytes})
        # by partition-id, not by arrival: the weighted average's float sums then come out the same every run
        return super().aggregate_train(server_round, [got[pid] for pid in sorted(got)])  # type: ignore[misc]

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        got = self.collect_evaluate(server_round, replies)
        if not got:
            return None
        return super().aggregate_evaluate(server_round, [got[pid] for pid in sorted(got)])  # type: ignore[misc]


def parameter_server(base: type[fl.Strategy]) -> type[fl.Strategy]:
    """``base`` (one of Flower's strategies) with :class:`ParameterServer` in front of it."""
    return type(base.__name__, (ParameterServer, base), {"__doc__": f"Flower's {base.__name__}, per node."})


FLOWER_STRATEGIES: dict[str, type[fl.Strategy]] = {
    "fedavg": fl.FedAvg,
    "fedprox": fl.FedProx,
    "fedavgm": fl.FedAvgM,
    "fedadam": fl.FedAdam,
    "fedadagrad": fl.FedAdagrad,
    "fedyogi": fl.FedYogi,
    "fedmedian": fl.FedMedian,
    "fedtrimmedavg": fl.FedTrimmedAvg,
    "krum": fl.Krum,
}
"""Run-config name -> Flower's strategy."""
