"""Decentralized SGD, emulated on Flower's server.

Flower has no peer-to-peer runtime, so the server *emulates* gossip: it keeps
one model per node (keyed by the node's ``partition-id``), sends each node its
own model to train, and after training replaces every node's model with the
weighted average of its neighbours' models, ``x_i <- sum_j W_ij x_j``: one
matrix product over the stacked, flattened parameters. Only what the mixing
needs is held: one ``(n, P)`` float32 stack.

Nodes whose training reply did not arrive keep their previous model; for the
others, the mixing weights are re-normalised over the models that did arrive
(row ``i``: ``W'_ij = W_ij / sum_{k arrived} W_ik`` for arrived ``j``, 0
otherwise), so every row still sums to 1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from logging import INFO, WARNING

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.common.logger import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg
from scipy import sparse


class ParameterStack:
    """Per-node models as one ``(n, P)`` float32 matrix, and back to ArrayRecords."""

    def __init__(self, template: ArrayRecord, num_nodes: int) -> None:
        arrays = template.to_numpy_ndarrays()
        self.keys = list(template.keys())
        self.shapes = [a.shape for a in arrays]
        self.dtypes = [a.dtype for a in arrays]
        self.sizes = [int(a.size) for a in arrays]
        flat = np.concatenate([a.astype(np.float32).ravel() for a in arrays])
        self.matrix = np.tile(flat, (num_nodes, 1))

    def flatten(self, record: ArrayRecord) -> np.ndarray:
        """ArrayRecord -> flat float32 vector (same key order as the template)."""
        return np.concatenate([record[k].numpy().astype(np.float32).ravel() for k in self.keys])

    def record(self, node: int | None) -> ArrayRecord:
        """Node ``node``'s model as an ArrayRecord (``None``: the average model)."""
        out = ArrayRecord()
        offset = 0
        row = self.matrix.mean(axis=0) if node is None else self.matrix[node]
        for key, shape, dtype, size in zip(self.keys, self.shapes, self.dtypes, self.sizes):
            out[key] = Array(row[offset : offset + size].reshape(shape).astype(dtype, copy=False))
            offset += size
        return out


def mix(W: np.ndarray | sparse.spmatrix, X: np.ndarray, arrived: np.ndarray | None = None) -> np.ndarray:
    """One gossip step ``X <- W' X`` over stacked parameters.

    Parameters
    ----------
    W : array or sparse matrix, shape (n, n)
        Row-stochastic mixing matrix.
    X : numpy.ndarray, shape (n, P)
        Stacked node parameters (rows of nodes that failed hold their previous model).
    arrived : numpy.ndarray of bool, shape (n,), optional
        Which nodes' new models arrived; ``None`` means all.

    Returns
    -------
    numpy.ndarray
        The mixed stack; a node that did not arrive keeps its row, and each
        arrived node averages over arrived neighbours with re-normalised weights.
    """
    if arrived is None or arrived.all():
        return np.asarray(W @ X, dtype=X.dtype)
    W_eff = effective_mixing(W, arrived).astype(X.dtype)
    return np.asarray(W_eff @ X, dtype=X.dtype)


def effective_mixing(W: np.ndarray | sparse.spmatrix, arrived: np.ndarray) -> np.ndarray:
    """The mixing matrix actually applied when only ``arrived`` nodes replied."""
    W = W.toarray() if sparse.issparse(W) else np.asarray(W, dtype=np.float64)
    W_eff = W * arrived[None, :]
    sums = W_eff.sum(axis=1, keepdims=True)
    W_eff = np.divide(W_eff, sums, out=np.zeros_like(W_eff), where=sums > 0)
    for i in np.flatnonzero(~arrived):
        W_eff[i] = 0.0
        W_eff[i, i] = 1.0
    return W_eff


def consensus_distance(X: np.ndarray) -> float:
    """Mean squared distance of the node models to their average: ``1/n sum_i ||x_i - x_bar||^2``."""
    mean = X.mean(axis=0, dtype=np.float64)
    total = 0.0
    for start in range(0, len(X), 64):  # in blocks: no (n, P) float64 temporary
        diff = X[start : start + 64] - mean
        total += float(np.einsum("ij,ij->", diff, diff))
    return total / len(X)


class Decentralized(FedAvg):
    """Decentralized learning with a mixing matrix ``W`` (emulated on the server).

    Parameters
    ----------
    mixing_matrix : numpy.ndarray or scipy sparse matrix, shape (n, n)
        Validated mixing matrix indexed by ``partition-id``.
    node_ids : Mapping[int, int]
        ``partition-id`` -> Flower node id.
    train_metrics_aggr_fn, evaluate_metrics_aggr_fn : callable, optional
        As in :class:`flwr.serverapp.strategy.FedAvg`.
    on_failure : callable, optional
        Called as ``on_failure(server_round, partition_id, stage, reason)`` for
        every node whose reply did not arrive or carried an error.
    """

    def __init__(
        self,
        mixing_matrix: np.ndarray | sparse.spmatrix,
        node_ids: Mapping[int, int],
        *,
        train_metrics_aggr_fn: Callable[[list[RecordDict], str], MetricRecord] | None = None,
        evaluate_metrics_aggr_fn: Callable[[list[RecordDict], str], MetricRecord] | None = None,
        on_failure: Callable[[int, int, str, str], None] | None = None,
    ) -> None:
        n = mixing_matrix.shape[0]
        super().__init__(
            min_train_nodes=n,
            min_evaluate_nodes=n,
            min_available_nodes=n,
            train_metrics_aggr_fn=train_metrics_aggr_fn,
            evaluate_metrics_aggr_fn=evaluate_metrics_aggr_fn,
        )
        if sorted(node_ids) != list(range(n)):
            raise ValueError(f"node_ids must map every partition-id 0..{n - 1}; got {sorted(node_ids)}")
        # large graphs: a sparse float32 W keeps the product (n, P) float32 and cheap
        self.W = sparse.csr_matrix(mixing_matrix, dtype=np.float32) if n > 64 else mixing_matrix
        self.node_ids = dict(node_ids)
        self.partition_of = {nid: pid for pid, nid in self.node_ids.items()}
        self.stack: ParameterStack | None = None
        self.on_failure = on_failure
        self.consensus: dict[int, float] = {}

    @property
    def num_nodes(self) -> int:
        return self.W.shape[0]

    def summary(self) -> None:
        """Log the strategy's set-up."""
        log(INFO, "\t├──> Decentralized: %d nodes, one model per node, x_i <- sum_j W_ij x_j", self.num_nodes)
        log(INFO, "\t└──> Keys in records: arrays '%s', config '%s'", self.arrayrecord_key, self.configrecord_key)

    # -------------------------------------------------------------- messages
    def _messages(self, arrays: ArrayRecord, config: ConfigRecord, server_round: int, kind: str) -> list[Message]:
        if self.stack is None:
            self.stack = ParameterStack(arrays, self.num_nodes)
        config["server-round"] = server_round
        return [
            Message(
                content=RecordDict({self.arrayrecord_key: self.stack.record(pid), self.configrecord_key: config}),
                message_type=kind,
                dst_node_id=self.node_ids[pid],
            )
            for pid in range(self.num_nodes)
        ]

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Send each node its own model (the first round: the shared initial model)."""
        return self._messages(arrays, config, server_round, MessageType.TRAIN)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Send each node its own (mixed) model to evaluate."""
        return self._messages(arrays, config, server_round, MessageType.EVALUATE)

    # ----------------------------------------------------------- aggregation
    def _fail(self, server_round: int, pid: int, stage: str, reason: str) -> None:
        last = [line for line in str(reason).splitlines() if line.strip()]
        log(WARNING, "round %d: node %d failed in %s: %s", server_round, pid, stage, last[-1] if last else reason)
        if self.on_failure is not None:
            self.on_failure(server_round, pid, stage, reason)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Apply ``W`` to the trained models; failed nodes keep their previous model."""
        replies = list(replies)
        assert self.stack is not None
        got = self._collect(server_round, replies, "train")
        arrived = np.zeros(self.num_nodes, dtype=bool)
        for pid, msg in got.items():
            self.stack.matrix[pid] = self.stack.flatten(msg.content[self.arrayrecord_key])
            arrived[pid] = True
        if arrived.any():
            self.stack.matrix = mix(self.W, self.stack.matrix, arrived)
        dist = consensus_distance(self.stack.matrix)
        self.consensus[server_round] = dist
        metrics = None
        if got:
            metrics = self.train_metrics_aggr_fn([m.content for m in got.values()], self.weighted_by_key)
            metrics["consensus-distance"] = dist
        log(INFO, "round %d: consensus distance %.6g", server_round, dist)
        # Flower's loop keeps this as the "global" model: the nodes' average.
        return self.stack.record(None), metrics

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        """Aggregate the per-node evaluation metrics (mean, min, max accuracy)."""
        got = self._collect(server_round, list(replies), "evaluate")
        if not got:
            return None
        contents = [m.content for m in got.values()]
        metrics = self.evaluate_metrics_aggr_fn(contents, self.weighted_by_key)
        accs = [float(c["metrics"]["eval-acc"]) for c in contents if "eval-acc" in c["metrics"]]
        if accs:
            metrics["eval-acc-min"] = min(accs)
            metrics["eval-acc-max"] = max(accs)
        return metrics

    def _collect(self, server_round: int, replies: list[Message], stage: str) -> dict[int, Message]:
        by_pid: dict[int, Message] = {}
        for msg in replies:
            pid = self.partition_of.get(msg.metadata.src_node_id)
            if pid is None:
                continue
            if msg.has_error():
                self._fail(server_round, pid, stage, msg.error.reason)
            else:
                by_pid[pid] = msg
        answered = {self.partition_of.get(m.metadata.src_node_id) for m in replies}
        for pid in range(self.num_nodes):
            if pid not in answered:
                self._fail(server_round, pid, stage, "no reply within the round timeout")
        return by_pid
