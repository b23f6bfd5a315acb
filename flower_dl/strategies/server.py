"""Flower's built-in strategies as flower-dl's parameter-server baselines.

Each of Flower's strategies (``FedAvg``, ``FedProx``, ...) is run unchanged,
with one mixin in front of it, :class:`ParameterServer`: it adds the run
config to every message, and before handing the replies to Flower's own
aggregation it records each node's metrics and each failed or missing reply
in the strategy's :class:`~flower_dl.strategies.history.NodeHistory`, as
flower-dl's decentralized strategies do (Flower's own strategies only log a
failure and drop it). Every node holds the one global model, so the consensus
distance is 0; a node's ``gossip-bytes`` is its upload, the trained model.

Models with buffers: Flower's aggregation treats every array of the state
dict alike, so it averages BatchNorm's running means and variances with the
weights (as flower-dl's decentralized strategies mix them), and would average
integer counters (``num_batches_tracked``) too, into floats. The mixin
replaces each integer array of the aggregate by its maximum over the replies
that arrived, in its own dtype (:func:`counter_maxima`): the one model every
node receives next carries the largest count any node reported, the value
the decentralized strategies give their average model.

Central DP (``central-dp-noise-multiplier`` > 0, FedAvg and FedProx only):
Flower's own wrapper, :class:`~flwr.serverapp.strategy.DifferentialPrivacyServerSideFixedClipping`,
clips each node's update to ``central-dp-clip`` and adds Gaussian noise to the
mean; :class:`CentralDP` only records the node-level epsilon it has spent, and
the mixin then weights every node alike, the weighting the noise's sensitivity
``clip / n`` is computed for.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import cast

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp import strategy as fl

from flower_dl import protocol, registry
from flower_dl.privacy import central_dp
from flower_dl.strategies.base import PerNode
from flower_dl.strategies.parameters import is_mixed


def counter_keys(arrays: ArrayRecord) -> list[str]:
    """The keys of the non-floating arrays (counters, e.g. BatchNorm's ``num_batches_tracked``) of ``arrays``."""
    return [key for key, array in arrays.items() if not is_mixed(array.numpy().dtype)]


def counter_maxima(replies: Sequence[Message]) -> dict[str, np.ndarray]:
    """Each non-floating array (a counter) of the replies' models: its element-wise maximum over ``replies``.

    Parameters
    ----------
    replies : sequence of Message
        The arrived ``train`` replies.

    Returns
    -------
    dict of str to numpy.ndarray
        Key -> maximum, in the dtype the replies carried it in (empty: no
        counters, or no replies).
    """
    trained = [protocol.reply_arrays(reply) for reply in replies]
    out = {}
    for key in counter_keys(trained[0]) if trained else ():
        values = trained[0][key].numpy()
        stacked = np.stack([values, *(t[key].numpy() for t in trained[1:])])
        out[key] = np.asarray(stacked.max(axis=0), dtype=values.dtype)
    return out


class ParameterServer(PerNode):
    """Mixin in front of one of Flower's strategies: per-node history, run config, counters left unaveraged."""

    uniform_weights: bool = False
    """Weight every node's model alike in the mean (central DP's sensitivity holds for that mean only)."""

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        config = self.train_config(server_round, config)
        return self.stamped(super().configure_train(server_round, arrays, config, grid))  # type: ignore[misc]  # the mixin's super() is the Flower strategy parameter_server puts behind it

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        if not self.evaluation.evaluate_message(server_round):
            return []
        return self.stamped(super().configure_evaluate(server_round, arrays, config, grid))  # type: ignore[misc]  # the mixin's super() is the Flower strategy parameter_server puts behind it

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        got = self.collect_train(server_round, replies)
        self.history.consensus[server_round] = 0.0  # one model, held by every node
        for pid in self.node_ids:  # a node's communication is its upload (none when its reply was lost)
            nbytes = protocol.arrays_nbytes(protocol.reply_arrays(got[pid])) if pid in got else 0
            self.history.record(server_round, pid, {"gossip-bytes": nbytes})
        # by partition-id, not by arrival: the weighted average's float sums then come out the same every run
        ordered = [got[pid] for pid in sorted(got)]
        counters = counter_maxima(ordered)  # first: FedMedian's aggregation empties the replies' records
        if self.uniform_weights:  # the history has kept each node's real count
            for reply in ordered:
                record = cast(MetricRecord, reply.content[protocol.METRICS])
                record[self.weighted_by_key] = 1  # type: ignore[attr-defined]  # weighted_by_key: an attribute of the Flower strategy behind the mixin
        arrays, metrics = super().aggregate_train(server_round, ordered)  # type: ignore[misc]  # the mixin's super() is the Flower strategy parameter_server puts behind it
        if arrays is not None:
            for key, value in counters.items():
                arrays[key] = Array(value)
        return arrays, metrics

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        got = self.collect_evaluate(server_round, replies)
        if not got:
            return None
        return super().aggregate_evaluate(server_round, [got[pid] for pid in sorted(got)])  # type: ignore[misc]  # the mixin's super() is the Flower strategy parameter_server puts behind it


def check_central_arrays(arrays: ArrayRecord) -> None:
    """Refuse central DP for a model whose state holds integer arrays (BatchNorm's ``num_batches_tracked``).

    Flower's wrapper clips and noises every array of the model, so a counter
    would become a noisy float (and a running variance could turn negative).

    Raises
    ------
    ValueError
        Naming ``central-dp-noise-multiplier``, the arrays and what is allowed.
    """
    counters = counter_keys(arrays)
    if counters:
        raise ValueError(
            f"central-dp-noise-multiplier: the model's state holds integer arrays ({', '.join(counters[:3])}), "
            "which Flower's central-DP wrapper would clip and noise like weights; allowed: a model whose state "
            "is floating-point only (e.g. GroupNorm or LayerNorm instead of BatchNorm), or no central DP"
        )


class CentralDP(fl.DifferentialPrivacyServerSideFixedClipping):
    """Flower's central DP around a parameter-server baseline, recording the epsilon it has spent per node.

    Flower's wrapper clips, averages through the wrapped strategy and adds the
    noise; this subclass adds the per-round ``central-dp-epsilon`` (node-level,
    at ``delta``; :func:`flower_dl.privacy.central_dp.central_epsilon`) to the wrapped
    strategy's history, and hands every other attribute (``history``,
    ``node_ids``, ...) to the wrapped strategy, so the ServerApp reads it as
    it reads an unwrapped one. Flower's own accountant is not used: it asks
    for ``FedAvg.aggregate_train`` itself, which the :class:`ParameterServer`
    mixin overrides (to keep its history). A round with a failed node
    releases nothing (Flower's wrapper skips the aggregation: the noise is
    computed for ``n`` updates) and its epsilon is counted all the same, an
    upper bound.
    """

    def __init__(self, strategy: ParameterServer, noise_multiplier: float, clip: float, delta: float) -> None:
        # a ParameterServer is always a Flower Strategy too (parameter_server mixes it into one)
        super().__init__(
            cast(fl.Strategy, strategy), noise_multiplier, clip, num_sampled_clients=len(strategy.node_ids)
        )
        strategy.uniform_weights = True
        self.delta = delta

    def __getattr__(self, name: str):  # only for names the wrapper itself lacks
        inner = self.__dict__.get("strategy")
        if inner is None:
            raise AttributeError(name)
        return getattr(inner, name)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        arrays, metrics = super().aggregate_train(server_round, replies)
        epsilon = central_dp.central_epsilon(self.noise_multiplier, server_round, self.delta)
        for pid in self.strategy.node_ids:  # type: ignore[attr-defined]  # Flower types the wrapped strategy as Strategy; it is a ParameterServer
            self.strategy.history.record(server_round, pid, {protocol.CENTRAL_DP_EPSILON: epsilon})  # type: ignore[attr-defined]  # as above: the ParameterServer's history
        return arrays, metrics


def parameter_server(base: type[fl.Strategy]) -> type[ParameterServer]:
    """``base`` (one of Flower's strategies) with :class:`ParameterServer` in front of it."""
    return type(base.__name__, (ParameterServer, base), {"__doc__": f"Flower's {base.__name__}, per node."})


FLOWER_STRATEGIES: dict[str, type[fl.Strategy]] = {
    name: registry.STRATEGIES.load(name) for name in registry.strategies_of_kind("parameter-server")
}
"""Run-config name -> Flower's strategy."""
