"""The decentralized aggregation step, on known vectors."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import ArrayRecord

from flower_dl.strategies.base import ParameterStack
from flower_dl.strategies.mixing import consensus_distance, effective_mixing, mix
from flower_dl.topology import build_graph, mixing_matrix


def test_one_step_equals_W_times_X() -> None:
    W = mixing_matrix(build_graph("edges", 5), "metropolis")
    X = np.arange(15, dtype=np.float32).reshape(5, 3)
    expected = np.array(
        [
            [1 / 4, 1 / 4, 1 / 4, 1 / 4, 0],
            [1 / 4, 3 / 4, 0, 0, 0],
            [1 / 4, 0, 5 / 12, 0, 1 / 3],
            [1 / 4, 0, 0, 3 / 4, 0],
            [0, 0, 1 / 3, 0, 2 / 3],
        ]
    ) @ X.astype(np.float64)
    assert np.allclose(mix(W, X), expected, atol=1e-5)
    # averaging preserves the mean (doubly stochastic W)
    assert np.allclose(mix(W, X).mean(axis=0), X.mean(axis=0), atol=1e-5)


def test_failed_nodes_keep_their_model_and_rows_renormalise() -> None:
    W = mixing_matrix(build_graph("ring", 4), "metropolis")  # 1/3 each
    arrived = np.array([True, False, True, True])
    W_eff = effective_mixing(W, arrived)
    assert np.allclose(W_eff.sum(axis=1), 1.0)
    assert W_eff[1].tolist() == [0, 1, 0, 0]
    assert np.allclose(W_eff[0], [0.5, 0, 0, 0.5])  # neighbour 1 dropped, 1/3 + 1/3 renormalised
    assert np.allclose(W_eff[2], [0, 0, 0.5, 0.5])
    X = np.eye(4, dtype=np.float32)
    assert np.allclose(mix(W, X, arrived), W_eff @ X)


def test_consensus_distance() -> None:
    X = np.array([[0.0, 0.0], [2.0, 0.0]])
    assert consensus_distance(X) == pytest.approx(1.0)  # each is 1 away from the mean
    assert consensus_distance(np.ones((3, 4))) == 0.0


def test_parameter_stack_round_trips_a_state_dict() -> None:
    import torch

    from flower_dl.node.models import build_model

    model = build_model("cnn", seed=0)
    record = ArrayRecord(model.state_dict())
    stack = ParameterStack(record, 3)
    assert stack.matrix.shape == (3, sum(p.numel() for p in model.state_dict().values()))
    back = stack.record(1).to_torch_state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(back[key], value)
    stack.matrix[2] += 1.0
    assert np.allclose(stack.flatten(stack.record(2)), stack.matrix[2])


def test_a_sparse_W_stays_sparse_when_nodes_fail_and_mixes_as_the_dense_one() -> None:
    from scipy import sparse

    W = mixing_matrix(build_graph("ring", 80), "metropolis")
    arrived = np.ones(80, dtype=bool)
    arrived[[0, 5, 6]] = False
    W_sparse_eff = effective_mixing(sparse.csr_matrix(W), arrived)
    assert sparse.issparse(W_sparse_eff)
    assert np.allclose(W_sparse_eff.toarray(), effective_mixing(W, arrived))
    X = np.random.default_rng(2).standard_normal((80, 30)).astype(np.float32)
    mixed = mix(sparse.csr_matrix(W, dtype=np.float32), X, arrived)
    assert np.allclose(mixed, effective_mixing(W, arrived) @ X, atol=1e-6)
    assert np.array_equal(mixed[[0, 5, 6]], X[[0, 5, 6]])  # the failed nodes keep their rows
