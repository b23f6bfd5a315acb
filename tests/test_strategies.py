"""The strategies in Flower's own style: ``aggregate_*`` on hand-made replies, checked against values worked out by hand.

Replies include an error and a missing reply; every strategy must record both
as failures in its per-node history (Flower's own strategies drop them), and
hand the ServerApp per-node results the same way.
"""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord
from flwr.supercore.task_identity import TaskIdentity

from flower_dl import protocol
from flower_dl.config import RunConfig
from flower_dl.server.grid import NO_REPLY, split_replies
from flower_dl.strategies import build_strategy
from flower_dl.strategies.base import EvaluationPlan
from flower_dl.strategies.decentralized import Decentralized

from .conftest import error_reply, evaluate_reply, train_reply

NODE_IDS = {0: 100, 1: 101, 2: 102}
# Metropolis weights of the line 0 - 1 - 2 (degrees 1, 2, 1): W_ij = 1 / (1 + max(deg_i, deg_j))
W_LINE = np.array([[2 / 3, 1 / 3, 0], [1 / 3, 1 / 3, 1 / 3], [0, 1 / 3, 2 / 3]])


@pytest.fixture(autouse=True)
def task_identity():
    """Flower stamps a new message with the sender's identity: the ServerApp's, here."""
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 1, 1


def _decentralized(evaluation: EvaluationPlan | None = None) -> Decentralized:
    strategy = Decentralized(W_LINE, NODE_IDS, {"num-nodes": 3}, evaluation or EvaluationPlan(3, in_train=False))
    initial = ArrayRecord({"w": Array(np.zeros(2, dtype=np.float32))})
    strategy.configure_train(1, initial, ConfigRecord(), grid=None)  # builds the stack
    return strategy


def test_split_replies_names_errors_and_missing_replies() -> None:
    replies = [train_reply(100, [1, 1], 0.1, 1), error_reply(102, "Traceback ...\nValueError: boom")]
    got = split_replies(replies, {100: 0, 101: 1, 102: 2, 999: 9})
    assert list(got.ok) == [0]
    assert got.failed == {2: "ValueError: boom", 1: NO_REPLY, 9: NO_REPLY}


def test_decentralized_mixes_the_arrived_models_and_records_the_failures() -> None:
    strategy = _decentralized()
    replies = [
        train_reply(100, [3, 0], loss=1.0, num_examples=10),
        train_reply(101, [6, 3], loss=2.0, num_examples=30),
        error_reply(102, "Traceback (most recent call last):\n  ...\nRuntimeError: out of memory"),
    ]
    arrays, metrics = strategy.aggregate_train(1, replies)
    # node 2 failed: it keeps its model (the initial 0, 0); node 1's row [1/3, 1/3, (1/3)] re-normalised to
    # [1/2, 1/2, 0]; node 0's row has no weight on node 2 and stays [2/3, 1/3, 0]
    expected = np.array([[4.0, 1.0], [4.5, 1.5], [0.0, 0.0]])
    assert np.allclose(strategy.stack.matrix, expected)
    assert np.allclose(arrays["w"].numpy(), expected.mean(axis=0))  # Flower's "global" model: the average
    assert strategy.history.consensus[1] == pytest.approx(40 / 9)  # sum_i ||x_i - mean||^2 / 3, by hand
    assert metrics["train-loss"] == pytest.approx((1.0 * 10 + 2.0 * 30) / 40)  # weighted by num-examples
    assert metrics["consensus-distance"] == pytest.approx(40 / 9)
    # gossip-bytes: one 8-byte model to each arrived neighbour; node 2 neither sends nor receives
    assert strategy.history.columns == {
        (1, 0): {"train-loss": 1.0, "train-seconds": 0.5, "num-train-examples": 10, "gossip-bytes": 8},
        (1, 1): {"train-loss": 2.0, "train-seconds": 0.5, "num-train-examples": 30, "gossip-bytes": 8},
        (1, 2): {"gossip-bytes": 0},
    }
    assert strategy.history.failures == [
        {"round": 1, "node": 2, "stage": "train", "reason": "RuntimeError: out of memory"}
    ]


def test_decentralized_a_missing_reply_is_a_timeout() -> None:
    strategy = _decentralized()
    strategy.aggregate_train(1, [train_reply(100, [3, 0], 1.0, 10), train_reply(102, [0, 6], 1.0, 10)])
    # node 1 missing: it keeps (0, 0); nodes 0 and 2 each lose their weight on node 1:
    # row 0 [2/3, 0, 0] -> [1, 0, 0], row 2 [0, 0, 2/3] -> [0, 0, 1]
    assert np.allclose(strategy.stack.matrix, [[3, 0], [0, 0], [0, 6]])
    assert strategy.history.failures == [{"round": 1, "node": 1, "stage": "train", "reason": NO_REPLY}]


def test_decentralized_evaluate_records_every_node_and_the_spread() -> None:
    strategy = _decentralized()
    replies = [evaluate_reply(100, 0.5, 1.2, 100), evaluate_reply(101, 0.9, 0.3, 300)]
    metrics = strategy.aggregate_evaluate(2, replies)
    assert metrics["eval-acc"] == pytest.approx((0.5 * 100 + 0.9 * 300) / 400)
    assert (metrics["eval-acc-min"], metrics["eval-acc-max"]) == (0.5, 0.9)
    assert strategy.history.columns[(2, 1)] == {"accuracy": 0.9, "loss": 0.3}
    assert strategy.history.failures == [{"round": 2, "node": 2, "stage": "evaluate", "reason": NO_REPLY}]
    assert strategy.aggregate_evaluate(3, []) is None and len(strategy.history.failures) == 4


def test_the_evaluation_plan() -> None:
    plan = EvaluationPlan(num_rounds=5, every=2)
    assert [r for r in range(1, 6) if plan.measured(r)] == [2, 4, 5]
    assert [r for r in range(1, 6) if plan.in_train_message(r)] == [3, 5]  # they evaluate rounds 2 and 4
    assert [r for r in range(1, 6) if plan.evaluate_message(r)] == [5]
    separate = EvaluationPlan(num_rounds=5, every=2, in_train=False)
    assert [r for r in range(1, 6) if separate.in_train_message(r)] == []
    assert [r for r in range(1, 6) if separate.evaluate_message(r)] == [2, 4, 5]


def test_a_train_message_carries_the_previous_rounds_evaluation() -> None:
    strategy = _decentralized(EvaluationPlan(3))
    messages = list(strategy.configure_train(2, ArrayRecord(), ConfigRecord(), grid=None))
    assert all(protocol.parse_train_request(m).evaluate_first for m in messages)
    assert list(strategy.configure_evaluate(2, ArrayRecord(), ConfigRecord(), grid=None)) == []
    assert strategy.aggregate_evaluate(2, []) is None and strategy.history.failures == []  # none was sent
    replies = [
        train_reply(100, [3, 0], 1.0, 10, evaluated=(0.75, 0.5)),
        train_reply(101, [6, 3], 2.0, 30, evaluated=(0.25, 1.5)),
        error_reply(102, "RuntimeError: gone"),
    ]
    strategy.aggregate_train(2, replies)
    # round 2's train replies measured the models of round 1
    assert strategy.history.columns[(1, 0)] == {"accuracy": 0.75, "loss": 0.5}
    assert strategy.history.columns[(1, 1)] == {"accuracy": 0.25, "loss": 1.5}
    assert "accuracy" not in strategy.history.columns[(2, 0)]
    assert strategy.history.failures == [
        {"round": 2, "node": 2, "stage": "train", "reason": "RuntimeError: gone"},
        {"round": 1, "node": 2, "stage": "evaluate", "reason": "RuntimeError: gone"},
    ]
    assert len(list(strategy.configure_evaluate(3, ArrayRecord(), ConfigRecord(), grid=None))) == 3  # the last


def test_decentralized_sends_each_node_its_own_model_with_the_run_config() -> None:
    strategy = _decentralized()
    strategy.stack.matrix[:] = [[1, 1], [2, 2], [3, 3]]
    messages = list(strategy.configure_train(2, ArrayRecord(), ConfigRecord(), grid=None))
    assert [m.metadata.dst_node_id for m in messages] == [100, 101, 102]
    for pid, msg in enumerate(messages):
        request = protocol.parse_train_request(msg)
        assert request.server_round == 2 and request.proximal_mu == 0.0
        assert request.arrays["w"].numpy().tolist() == [pid + 1, pid + 1]
        assert protocol.run_config_of(msg) == {"num-nodes": 3}
        assert msg.metadata.message_type == protocol.TRAIN


class _Grid:
    """Just what Flower's node sampling asks of a Grid."""

    def get_node_ids(self):
        return list(NODE_IDS.values())


@pytest.mark.parametrize("name", ["fedavg", "fedprox"])
def test_flower_strategies_record_per_node_results_and_failures(name) -> None:
    cfg = RunConfig(num_nodes=3, topology="line", strategy=name, proximal_mu=0.25, evaluate_in_train=False)
    strategy = build_strategy(cfg, W_LINE, NODE_IDS)
    initial = ArrayRecord({"w": Array(np.zeros(2, dtype=np.float32))})
    messages = list(strategy.configure_train(1, initial, ConfigRecord(), _Grid()))
    assert sorted(m.metadata.dst_node_id for m in messages) == [100, 101, 102]
    request = protocol.parse_train_request(messages[0])
    assert request.proximal_mu == (0.25 if name == "fedprox" else 0.0)  # FedProx's own "proximal-mu"
    assert protocol.run_config_of(messages[0])["strategy"] == name
    replies = [
        train_reply(100, [4, 0], loss=1.0, num_examples=10),
        train_reply(101, [0, 8], loss=3.0, num_examples=30),
        error_reply(102, "ValueError: bad batch"),
    ]
    arrays, metrics = strategy.aggregate_train(1, replies)
    assert np.allclose(arrays["w"].numpy(), [(4 * 10 + 0 * 30) / 40, (0 * 10 + 8 * 30) / 40])  # FedAvg, by hand
    assert metrics["train-loss"] == pytest.approx((1.0 * 10 + 3.0 * 30) / 40)
    assert strategy.history.consensus[1] == 0.0
    # gossip-bytes: the upload, one 2-float32 model; node 2's was lost
    assert strategy.history.columns[(1, 1)] == {
        "train-loss": 3.0, "train-seconds": 0.5, "num-train-examples": 30, "gossip-bytes": 8,
    }  # fmt: skip
    assert strategy.history.columns[(1, 2)] == {"gossip-bytes": 0}
    assert strategy.history.failures == [{"round": 1, "node": 2, "stage": "train", "reason": "ValueError: bad batch"}]

    metrics = strategy.aggregate_evaluate(1, [evaluate_reply(100, 0.6, 1.0), evaluate_reply(102, 0.8, 0.5)])
    assert metrics["eval-acc"] == pytest.approx(0.7)
    assert strategy.history.columns[(1, 2)] == {"gossip-bytes": 0, "accuracy": 0.8, "loss": 0.5}
    assert strategy.history.failures[-1] == {"round": 1, "node": 1, "stage": "evaluate", "reason": NO_REPLY}
