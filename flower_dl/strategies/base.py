"""What flower-dl's strategies share: nodes by partition-id, one failure path, per-node history.

:class:`PerNode` is mixed into every strategy (flower-dl's and Flower's
built-in ones, see :mod:`flower_dl.strategies.server`): it maps partition-ids
to Flower node ids, adds the run config to every message it sends
(:mod:`flower_dl.protocol`), splits replies into usable ones and failures
(:func:`flower_dl.server.grid.split_replies`, a missing reply being a timeout) and
records both in a :class:`~flower_dl.strategies.history.NodeHistory`.

:class:`DecentralizedStrategy` is the base of the decentralized algorithms,
on Flower's :class:`~flwr.serverapp.strategy.Strategy` (decentralized
strategies sample no clients, so not on ``FedAvg``). Flower has no
peer-to-peer runtime: the server *emulates* gossip, holding one model per
node in a :class:`ParameterStack`. It sends each node its own model, collects
the replies, and hands the arrived ones to :meth:`DecentralizedStrategy.update`,
the one hook an algorithm must write (D-PSGD: write the trained models into
the stack, then mix with ``W``). What a node is sent is
:meth:`DecentralizedStrategy.train_content`, which an algorithm may extend.
Which matrices a round mixes with is :meth:`DecentralizedStrategy.mixings`,
from the run's :class:`GossipSchedule` (``mixing-schedule``, ``gossip-steps``);
what each node would have sent is recorded as its ``gossip-bytes``.

The stack itself, and how it treats a model's buffers, is
:mod:`flower_dl.strategies.parameters`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from logging import INFO
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.common.logger import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy
from flwr.serverapp.strategy.strategy_utils import aggregate_metricrecords
from scipy import sparse

from flower_dl import protocol
from flower_dl.server.grid import split_replies
from flower_dl.strategies.history import NodeHistory
from flower_dl.strategies.mixing import consensus_distance
from flower_dl.strategies.parameters import ParameterStack
from flower_dl.topology import schedules


@dataclass(frozen=True)
class EvaluationPlan:
    """Which rounds' models are evaluated, and in which message.

    Round ``r``'s model (for D-PSGD: after round ``r``'s mixing) is evaluated
    if ``r`` is a multiple of ``every`` or the last round. With ``in_train``
    (the default) a node evaluates it at the start of round ``r + 1``'s
    ``train`` message, where it receives that model anyway: one message per
    node per round; only the last round gets an ``evaluate`` message. Without
    it, an ``evaluate`` message follows each evaluated round (twice the
    messages; the same accuracies).
    """

    num_rounds: int
    every: int = 1
    in_train: bool = True

    def measured(self, server_round: int) -> bool:
        """Whether the model of ``server_round`` is evaluated at all."""
        return server_round == self.num_rounds or server_round % self.every == 0

    def in_train_message(self, server_round: int) -> bool:
        """Whether the ``train`` message of ``server_round`` evaluates the received model (round - 1's)."""
        return self.in_train and server_round > 1 and self.measured(server_round - 1)

    def evaluate_message(self, server_round: int) -> bool:
        """Whether an ``evaluate`` message follows ``server_round``."""
        return self.measured(server_round) and (not self.in_train or server_round == self.num_rounds)


@dataclass(frozen=True)
class GossipSchedule:
    """The mixing matrices of each round: ``mixing-schedule`` and ``gossip-steps`` (:mod:`flower_dl.topology.schedules`).

    ``static`` mixes with the topology's ``W`` every step. The other schedules
    draw each step's ``W(t)`` from ``(seed, round, step)`` alone, so any round's
    matrices can be re-derived from ``config.json``; each is validated as it
    is drawn (non-negative, rows summing to 1, only on the pairs allowed that
    step, doubly stochastic where the schedule promises it), and a bad one
    stops the run.
    """

    name: str = "static"
    steps: int = 1
    seed: int = 0
    epidemic_peers: int = 1
    edges: tuple[tuple[int, int], ...] = ()

    @property
    def ignores_topology(self) -> bool:
        """Whether the schedule picks its peers regardless of the topology's edges."""
        return self.name in ("one-peer-exponential", "epidemic")

    def matrices(self, server_round: int, W: np.ndarray | sparse.spmatrix) -> list[np.ndarray | sparse.spmatrix]:
        """The ``gossip-steps`` mixing matrices of ``server_round``, in the order they are applied."""
        if self.name == "static":
            return [W] * self.steps
        n = W.shape[0]
        out = []
        for step in range(self.steps):
            Wt = schedules.mixing_at(
                self.name, server_round, num_nodes=n, edges=self.edges, seed=self.seed,
                epidemic_peers=self.epidemic_peers, step=step, gossip_steps=self.steps,
            )  # fmt: skip
            support = schedules.round_support(
                self.name, server_round, num_nodes=n, edges=self.edges, step=step, gossip_steps=self.steps
            )
            doubly = schedules.promises_doubly_stochastic(self.name)
            schedules.validate_round(
                Wt, support=support, doubly_stochastic=doubly, schedule=self.name, round_=server_round
            )
            out.append(Wt.astype(np.float32))
        return out


class PerNode:
    """Mixin: the partition-id map, the run config in every message, the failure path, the history.

    Parameters
    ----------
    node_ids : Mapping[int, int]
        ``partition-id`` -> Flower node id, for every node ``0..n-1``.
    run_config : Mapping[str, Any]
        The run config (kebab-case) added to every message, so a node knows what to do.
    evaluation : EvaluationPlan, optional
        When to evaluate (default: every round, in the next round's ``train`` message).
    """

    def __init__(
        self,
        *args: Any,
        node_ids: Mapping[int, int],
        run_config: Mapping[str, Any],
        evaluation: EvaluationPlan | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.evaluation = evaluation or EvaluationPlan(int(run_config.get("num-server-rounds", 10**9)))
        if sorted(node_ids) != list(range(len(node_ids))):
            raise ValueError(f"node_ids must map every partition-id 0..{len(node_ids) - 1}; got {sorted(node_ids)}")
        self.node_ids = dict(node_ids)
        self.partition_of = {nid: pid for pid, nid in self.node_ids.items()}
        self.run_config = protocol.run_config_record(run_config)
        self.history = NodeHistory()

    @property
    def num_nodes(self) -> int:
        return len(self.node_ids)

    def stamped(self, messages: Iterable[Message]) -> list[Message]:
        """``messages`` with the run config added (Flower's strategies share one content for all)."""
        messages = list(messages)
        for content in {id(m.content): m.content for m in messages}.values():
            protocol.with_run_config(content, self.run_config)
        return messages

    def collect(self, server_round: int, replies: Iterable[Message], stage: str) -> dict[int, Message]:
        """The usable replies by partition-id; every failed or missing one goes into the history."""
        got = split_replies(replies, self.partition_of)
        for pid, reason in sorted(got.failed.items()):
            self.history.fail(server_round, pid, stage, reason)
        return got.ok

    # -------------------------------------------------- train and evaluate
    def train_config(self, server_round: int, config: ConfigRecord) -> ConfigRecord:
        """The round's ``train`` config: the round, and whether to evaluate the received model first."""
        config[protocol.SERVER_ROUND] = server_round
        config[protocol.EVALUATE_FIRST] = self.evaluation.in_train_message(server_round)
        return config

    def collect_train(self, server_round: int, replies: Iterable[Message]) -> dict[int, Message]:
        """Record a round's ``train`` replies: the training metrics, and the previous round's evaluation."""
        replies = list(replies)
        got = self.collect(server_round, replies, "train")
        evaluated = self.evaluation.in_train_message(server_round)
        for pid, reply in got.items():
            self.history.record(server_round, pid, protocol.train_columns(reply))
            self.history.devices[pid] = protocol.reply_device(reply)
            if evaluated:
                self.history.record(server_round - 1, pid, protocol.evaluate_columns(reply))
        if evaluated:  # the evaluation of round - 1 was lost with the train reply
            for pid in sorted(set(self.node_ids) - set(got)):
                reason = next(f["reason"] for f in reversed(self.history.failures) if f["node"] == pid)
                self.history.fail(server_round - 1, pid, "evaluate", reason)
        return got

    def collect_evaluate(self, server_round: int, replies: Iterable[Message]) -> dict[int, Message]:
        """Record an ``evaluate`` message's replies (nothing was sent in a round without one)."""
        if not self.evaluation.evaluate_message(server_round):
            return {}
        got = self.collect(server_round, replies, "evaluate")
        for pid, reply in got.items():
            self.history.record(server_round, pid, protocol.evaluate_columns(reply))
        return got


class DecentralizedStrategy(PerNode, Strategy):
    """Base of the decentralized algorithms: one model per node, emulated gossip.

    Parameters
    ----------
    mixing_matrix : numpy.ndarray, shape (n, n)
        Validated mixing matrix indexed by ``partition-id``.
    node_ids, run_config, evaluation
        As in :class:`PerNode`.
    """

    def __init__(
        self,
        mixing_matrix: np.ndarray,
        node_ids: Mapping[int, int],
        run_config: Mapping[str, Any] | None = None,
        evaluation: EvaluationPlan | None = None,
        schedule: GossipSchedule | None = None,
    ) -> None:
        super().__init__(node_ids=node_ids, run_config=run_config or {}, evaluation=evaluation)
        if mixing_matrix.shape != (self.num_nodes, self.num_nodes):
            raise ValueError(f"mixing matrix has shape {mixing_matrix.shape}; expected {self.num_nodes} nodes")
        # large graphs: a sparse float32 W keeps the product (n, P) float32 and cheap
        self.W = sparse.csr_matrix(mixing_matrix, dtype=np.float32) if self.num_nodes > 64 else mixing_matrix
        self.schedule = schedule or GossipSchedule()
        self.stack: ParameterStack | None = None

    def summary(self) -> None:
        """Log the strategy's set-up."""
        log(INFO, "\t└──> %s: %d nodes, one model per node (gossip emulated on the server)",
            type(self).__name__, self.num_nodes)  # fmt: skip
        log(INFO, "\t└──> mixing-schedule %s, %d gossip step(s) per round%s", self.schedule.name,
            self.schedule.steps, " (the topology's edges are ignored)" if self.schedule.ignores_topology else "")  # fmt: skip

    # ------------------------------------------------------------- hooks
    def mixings(self, server_round: int) -> list[np.ndarray | sparse.spmatrix]:
        """The mixing matrices of ``server_round``, one per gossip step (:class:`GossipSchedule`)."""
        return self.schedule.matrices(server_round, self.W)

    def write_trained(self, replies: dict[int, Message], into: np.ndarray) -> np.ndarray:
        """Write each arrived reply's trained model into row ``pid`` of ``into``; return the arrived mask.

        ``into`` gets the floating arrays (a row of the stack's matrix, or of
        a copy an algorithm works on); the model's counters become the node's
        own in the stack at once (:meth:`ParameterStack.keep_counters`),
        whatever the algorithm does with the floats. A node whose reply did
        not arrive keeps its previous row and counters.
        """
        assert self.stack is not None
        arrived = np.zeros(self.num_nodes, dtype=bool)
        for pid, reply in replies.items():
            arrays = protocol.reply_arrays(reply)
            into[pid] = self.stack.flatten(arrays)
            self.stack.keep_counters(pid, arrays)
            arrived[pid] = True
        return arrived

    def record_gossip_bytes(self, server_round: int, vectors_sent: np.ndarray, vector_bytes: np.ndarray | int) -> None:
        """Record each node's ``gossip-bytes``: vectors it sent that round times the bytes of each."""
        sent = np.asarray(vectors_sent, dtype=np.int64) * np.asarray(vector_bytes, dtype=np.int64)
        for pid in range(self.num_nodes):
            self.history.record(server_round, pid, {"gossip-bytes": int(sent[pid])})

    def train_content(self, node: int, config: ConfigRecord) -> RecordDict:
        """What ``node`` is sent to train: its own model and the round's config."""
        assert self.stack is not None
        return protocol.train_content(self.stack.record(node), config)

    def update(self, server_round: int, replies: dict[int, Message]) -> None:
        """Apply the algorithm's update to the stack, given the arrived train ``replies`` by partition-id."""
        raise NotImplementedError

    # ---------------------------------------------------------- messages
    def _messages(self, kind: str, contents: Iterable[tuple[int, RecordDict]]) -> Iterator[Message]:
        """One message per node, built as it is sent: a simulation sends in windows
        (:func:`flower_dl.server.grid.prompt`), so only a window's models exist as messages at a time."""
        for pid, content in contents:
            protocol.with_run_config(content, self.run_config)
            yield Message(content, dst_node_id=self.node_ids[pid], message_type=kind)

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Send each node its own model (the first round: the shared initial model)."""
        if self.stack is None:
            self.stack = ParameterStack(arrays, self.num_nodes)
        config = self.train_config(server_round, config)
        return self._messages(protocol.TRAIN, ((pid, self.train_content(pid, config)) for pid in self.node_ids))

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Send each node its own (mixed) model to evaluate, in the rounds that have an ``evaluate`` message."""
        assert self.stack is not None
        if not self.evaluation.evaluate_message(server_round):
            return []
        config[protocol.SERVER_ROUND] = server_round
        contents = ((pid, protocol.train_content(self.stack.record(pid), config)) for pid in self.node_ids)
        return self._messages(protocol.EVALUATE, contents)

    # -------------------------------------------------------- aggregation
    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Record the replies, apply :meth:`update`; return the nodes' average model (Flower's "global" one)."""
        assert self.stack is not None
        got = self.collect_train(server_round, replies)
        self.update(server_round, got)
        dist = consensus_distance(self.stack.matrix)
        self.history.consensus[server_round] = dist
        log(INFO, "round %d: consensus distance %.6g", server_round, dist)
        metrics = None
        if got:
            metrics = aggregate_metricrecords([m.content for m in got.values()], protocol.NUM_EXAMPLES)
            metrics["consensus-distance"] = dist
        return self.stack.record(None), metrics

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        """Record every node's accuracy and loss; return their mean (and min, max accuracy)."""
        got = self.collect_evaluate(server_round, replies)
        if not got:
            return None
        metrics = aggregate_metricrecords([m.content for m in got.values()], protocol.NUM_EXAMPLES)
        accs = [protocol.evaluate_columns(reply)["accuracy"] for reply in got.values()]
        metrics["eval-acc-min"], metrics["eval-acc-max"] = min(accs), max(accs)
        return metrics
