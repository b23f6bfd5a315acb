"""Models with buffers (BatchNorm) through every kind of strategy: float buffers mixed, integer counters kept.

Each strategy is driven as in ``test_strategies.py``, without a simulation:
its ``configure_train`` messages go to nodes played here, which load the
model they are sent, really train it (so BatchNorm's running statistics and
``num_batches_tracked`` move, by a different number of steps per node) and
reply as a node does; the result is compared with a numpy computation of the
mixing (docs/algorithms.md, "Models with buffers").
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Message
from flwr.supercore.task_identity import TaskIdentity
from torch import nn

from flower_dl import protocol, registry
from flower_dl.config import RunConfig
from flower_dl.node.models import build_model, load_model
from flower_dl.node.training import evaluate, train
from flower_dl.strategies import build_strategy
from flower_dl.strategies.base import ParameterStack
from flower_dl.strategies.mixing import effective_mixing

from .conftest import as_node, error_reply, train_reply

NODE_IDS = {0: 100, 1: 101, 2: 102}
# Metropolis weights of the line 0 - 1 - 2
W_LINE = np.array([[2 / 3, 1 / 3, 0], [1 / 3, 1 / 3, 1 / 3], [0, 1 / 3, 2 / 3]])
SHAPE = (3, 6, 6)
CLASSES = 3
BATCH = 4
STEPS = {0: 2, 1: 3, 2: 5}
"""Local steps of each node in a round: their ``num_batches_tracked`` differ."""
MODEL = "tests.test_buffers:bn_net"
BN = "1"
"""The BatchNorm layer's key prefix in :func:`bn_net`'s state dict."""
COUNTER, FLOAT_BUFFERS = f"{BN}.num_batches_tracked", (f"{BN}.running_mean", f"{BN}.running_var")


def bn_net(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """A user's factory (by import path): convolution, BatchNorm, linear head."""
    return nn.Sequential(
        nn.Conv2d(input_shape[0], 4, kernel_size=3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, num_classes),
    )


@pytest.fixture(autouse=True)
def task_identity():
    """Flower stamps a new message with the sender's identity: the ServerApp's, here."""
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 1, 1


class _Grid:
    """Just what Flower's node sampling asks of a Grid."""

    def get_node_ids(self):
        return list(NODE_IDS.values())


def node_train(msg: Message, server_round: int) -> Message:
    """A node's ``train`` handler in small: load what it is sent, train ``STEPS`` steps, reply with the state dict."""
    pid = msg.metadata.dst_node_id - 100
    request = protocol.parse_train_request(msg)
    model = load_model(MODEL, request.arrays, torch.device("cpu"), input_shape=SHAPE, num_classes=CLASSES)
    g = torch.Generator().manual_seed(10 * server_round + pid)
    n = STEPS[pid] * BATCH
    x = torch.randn(n, *SHAPE, generator=g) * (1 + pid) + pid  # each node's inputs have their own statistics
    y = torch.randint(0, CLASSES, (n,), generator=g)
    correction = None if request.correction is None else request.correction.to_torch_state_dict()
    loss = train(model, x, y, epochs=1, lr=0.05, momentum=0.0, batch_size=BATCH, generator=g, correction=correction)
    with as_node(msg.metadata.dst_node_id):
        arrays = ArrayRecord(model.state_dict())
    return train_reply(msg, arrays, loss, n, seconds=0.1, num_steps=STEPS[pid])


def failed(msg: Message) -> Message:
    return error_reply(msg, "RuntimeError: gone")


def initial() -> ArrayRecord:
    return ArrayRecord(build_model(MODEL, SHAPE, CLASSES, seed=0).state_dict())


def run_round(strategy, server_round: int, arrays: ArrayRecord, lost: frozenset[int] = frozenset()):
    """One round: configure, the nodes' replies (``lost`` fail), aggregate; returns (messages, replies, aggregate)."""
    messages = list(strategy.configure_train(server_round, arrays, ConfigRecord(), _Grid()))
    replies = [failed(m) if m.metadata.dst_node_id - 100 in lost else node_train(m, server_round) for m in messages]
    aggregate, _ = strategy.aggregate_train(server_round, replies)
    return messages, replies, aggregate


def trained(replies: list[Message], key: str) -> dict[int, np.ndarray]:
    """Each arrived reply's ``key`` array, by partition-id."""
    return {r.metadata.src_node_id - 100: r.content["arrays"][key].numpy() for r in replies if not r.has_error()}


def decentralized(strategy: str, **config) -> object:
    cfg = RunConfig(num_nodes=3, topology="line", strategy=strategy, evaluate_in_train=False, **config)
    return build_strategy(cfg, W_LINE, NODE_IDS)


# -------------------------------------------------------------- the stack itself
def test_the_stack_mixes_floats_and_keeps_counters_per_node_in_their_dtype() -> None:
    template = ArrayRecord(
        {
            "w": Array(np.array([1.0, 2.0], dtype=np.float32)),
            "count": Array(np.array(0, dtype=np.int64)),
            "v": Array(np.array([3.0], dtype=np.float64)),
        }
    )
    stack = ParameterStack(template, 3)
    assert stack.matrix.shape == (3, 3) and stack.float_keys == ["w", "v"]
    assert stack.nbytes == 2 * 4 + 8 + 8  # the counter counts on the wire
    for pid, count in enumerate([4, 9, 2]):
        stack.keep_counters(pid, ArrayRecord({**template, "count": Array(np.array(count, dtype=np.int64))}))
    stack.matrix[:] = [[1, 1, 1], [2, 2, 2], [6, 6, 6]]
    one = stack.record(1)
    assert list(one.keys()) == ["w", "count", "v"]  # the template's order
    assert one["count"].numpy() == 9 and one["count"].numpy().dtype == np.int64
    assert one["v"].numpy().dtype == np.float64 and one["w"].numpy().tolist() == [2, 2]
    average = stack.record(None)  # the mean model, each counter's maximum
    assert average["w"].numpy().tolist() == [3, 3] and average["count"].numpy() == 9
    assert list(stack.as_record(stack.matrix[0]).keys()) == ["w", "v"]  # a correction has no counters


# ------------------------------------------------------------- decentralized
@pytest.mark.parametrize(
    ("name", "config"),
    [
        ("decentralized", {}),
        ("gradient-tracking", {}),
        ("choco", {"compression": "none", "choco_gamma": 1.0}),  # exactly D-PSGD's gossip
    ],
)
def test_float_buffers_are_mixed_with_W_and_counters_are_each_nodes_own(name, config) -> None:
    strategy = decentralized(name, **config)
    messages, replies, aggregate = run_round(strategy, 1, initial())
    assert all(protocol.parse_train_request(m).arrays[COUNTER].numpy().dtype == np.int64 for m in messages)
    stack = strategy.stack
    # round 1 starts every node at the same model, so D-PSGD, K-GT and Choco (none, gamma 1) all give x_i = sum_j W_ij z_j
    for key in (*FLOAT_BUFFERS, f"{BN}.weight", "0.weight"):
        z = trained(replies, key)
        for pid in NODE_IDS:
            expected = sum(W_LINE[pid, j] * z[j].astype(np.float64) for j in NODE_IDS)
            np.testing.assert_allclose(stack.record(pid)[key].numpy(), expected, rtol=1e-5, atol=1e-6)
    assert {pid: int(stack.record(pid)[COUNTER].numpy()) for pid in NODE_IDS} == STEPS
    assert stack.record(0)[COUNTER].numpy().dtype == np.int64
    assert int(aggregate[COUNTER].numpy()) == max(STEPS.values()) and aggregate[COUNTER].numpy().dtype == np.int64
    assert not np.allclose(stack.record(0)[FLOAT_BUFFERS[0]].numpy(), 0)  # training moved the running mean

    # round 2: each node is sent its own counter; node 2's reply is lost, so it keeps its previous one
    previous = {pid: stack.record(pid) for pid in NODE_IDS}
    messages, replies, _ = run_round(strategy, 2, aggregate, lost=frozenset({2}))
    sent = {m.metadata.dst_node_id - 100: protocol.parse_train_request(m).arrays for m in messages}
    assert {pid: int(sent[pid][COUNTER].numpy()) for pid in NODE_IDS} == STEPS
    assert {pid: int(stack.record(pid)[COUNTER].numpy()) for pid in NODE_IDS} == {0: 4, 1: 6, 2: 5}
    for key in FLOAT_BUFFERS:
        np.testing.assert_array_equal(stack.record(2)[key].numpy(), previous[2][key].numpy())
    if name == "decentralized":  # the arrived nodes mix over the arrived ones, re-normalised
        W_eff = effective_mixing(W_LINE, np.array([True, True, False]))
        z = {**trained(replies, FLOAT_BUFFERS[0]), 2: previous[2][FLOAT_BUFFERS[0]].numpy()}
        for pid in (0, 1):
            expected = sum(W_eff[pid, j] * z[j].astype(np.float64) for j in NODE_IDS)
            np.testing.assert_allclose(stack.record(pid)[FLOAT_BUFFERS[0]].numpy(), expected, rtol=1e-5, atol=1e-6)


def test_gradient_tracking_corrections_are_float_only_and_the_node_skips_the_buffers() -> None:
    strategy = decentralized("gradient-tracking")
    run_round(strategy, 1, initial())
    floats = sum(a.numpy().size for k, a in initial().items() if k != COUNTER)
    assert strategy.stack.matrix.shape == strategy.corrections.shape == (3, floats)
    assert np.abs(strategy.corrections).sum() > 0
    messages, _, _ = run_round(strategy, 2, initial())  # the nodes train with their corrections
    correction = protocol.parse_train_request(messages[0]).correction
    assert correction is not None and COUNTER not in correction
    assert set(correction.keys()) == set(initial().keys()) - {COUNTER}  # float buffers' trackers ride along
    np.testing.assert_allclose(strategy.corrections.sum(axis=0), 0, atol=1e-4)  # sum_i c_i = 0


def test_choco_public_copies_are_float_only_and_counters_are_never_compressed() -> None:
    strategy = decentralized("choco", compression="top-k", compression_ratio=0.3, choco_gamma=0.5)
    run_round(strategy, 1, initial())
    assert strategy.public.shape == strategy.stack.matrix.shape
    assert strategy.stack.matrix.shape[1] == sum(a.numpy().size for k, a in initial().items() if k != COUNTER)
    assert {pid: int(strategy.stack.record(pid)[COUNTER].numpy()) for pid in NODE_IDS} == STEPS
    assert np.isfinite(strategy.stack.matrix).all()


# ------------------------------------------------------------ parameter server
def parameter_server(name: str):
    cfg = RunConfig(num_nodes=3, topology="line", strategy=name, evaluate_in_train=False)
    return build_strategy(cfg, W_LINE, NODE_IDS)


def test_fedavg_averages_float_buffers_and_takes_the_largest_counter() -> None:
    strategy = parameter_server("fedavg")
    _, replies, aggregate = run_round(strategy, 1, initial(), lost=frozenset({2}))
    weights = {0: STEPS[0] * BATCH, 1: STEPS[1] * BATCH}  # num-examples of the arrived replies
    for key in (*FLOAT_BUFFERS, "0.weight"):
        z = trained(replies, key)
        expected = sum(weights[j] * z[j].astype(np.float64) for j in weights) / sum(weights.values())
        np.testing.assert_allclose(aggregate[key].numpy(), expected, rtol=1e-5, atol=1e-6)
    counter = aggregate[COUNTER].numpy()
    assert counter.dtype == np.int64 and int(counter) == STEPS[1]  # the lost node's 5 steps were never reported
    messages = list(strategy.configure_train(2, aggregate, ConfigRecord(), _Grid()))
    assert all(protocol.parse_train_request(m).arrays[COUNTER].numpy().dtype == np.int64 for m in messages)


@pytest.mark.parametrize("name", registry.strategies_of_kind("parameter-server"))
def test_every_flower_strategy_keeps_counters_integer(name) -> None:
    strategy = parameter_server(name)
    _, _, aggregate = run_round(strategy, 1, initial())
    counter = aggregate[COUNTER].numpy()
    assert counter.dtype == np.int64 and int(counter) == max(STEPS.values())
    _, _, aggregate = run_round(strategy, 2, aggregate)  # the aggregate trains again (FedAdam's state included)
    assert aggregate[COUNTER].numpy().dtype == np.int64
    assert all(np.isfinite(a.numpy()).all() for a in aggregate.values())


# ------------------------------------------------------------------- training
def test_training_a_resnet18_moves_its_running_statistics_and_evaluation_does_not() -> None:
    model = build_model("resnet18", (3, 32, 32), 10, seed=0)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(12, 3, 32, 32, generator=g) + 0.5, torch.randint(0, 10, (12,), generator=g)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train(model, x, y, epochs=1, lr=0.01, momentum=0.9, batch_size=4, generator=g)
    after = model.state_dict()
    assert not torch.equal(after["bn1.running_mean"], before["bn1.running_mean"])
    assert int(after["bn1.num_batches_tracked"]) == 3 and after["bn1.num_batches_tracked"].dtype == torch.int64
    assert not torch.equal(after["conv1.weight"], before["conv1.weight"])
    assert all(v.is_contiguous() for v in after.values())  # handed back in the default layout
    frozen = {k: v.clone() for k, v in after.items()}
    evaluate(model, x, y)  # eval mode: the running statistics are used, not updated
    assert all(torch.equal(model.state_dict()[k], v) for k, v in frozen.items())


def test_a_correction_for_a_buffer_is_skipped_by_training() -> None:
    """K-GT's server tracks float buffers too; SGD does not move a buffer, so the node ignores their entries."""
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, *SHAPE, generator=g), torch.randint(0, CLASSES, (8,), generator=g)
    ours, reference = (build_model(MODEL, SHAPE, CLASSES, seed=2) for _ in range(2))
    correction = {key: torch.full((4,), 100.0) for key in FLOAT_BUFFERS}
    kwargs = dict(epochs=1, lr=0.05, momentum=0.0, batch_size=4)
    train(ours, x, y, generator=torch.Generator().manual_seed(3), correction=correction, **kwargs)
    train(reference, x, y, generator=torch.Generator().manual_seed(3), **kwargs)
    for key, value in ours.state_dict().items():
        assert torch.equal(value, reference.state_dict()[key]), key
    with pytest.raises(ValueError, match="correction: 'nope' is not a parameter"):
        train(ours, x, y, generator=g, correction={"nope": torch.zeros(1)}, **kwargs)
