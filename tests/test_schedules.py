"""Tests for flower_dl.topology.schedules: every round's W(t) checked as math, on several graphs and seeds."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest
from scipy import sparse as sp

from flower_dl.topology import STUDY_EDGES, complete_graph, edge_list_graph, k_regular_graph, mixing_matrix, ring_graph
from flower_dl.topology.schedules import (
    PROMISES_DOUBLY_STOCHASTIC,
    SCHEDULES,
    SPARSE_ABOVE,
    check_gossip_steps,
    check_schedule,
    exponential_offset,
    mixing_at,
    models_sent,
    promises_doubly_stochastic,
    round_edges,
    round_support,
    validate_round,
)

ROUNDS = range(1, 51)
PEERS = 2


def _graphs() -> dict[str, nx.Graph]:
    return {
        "ring-8": ring_graph(8),
        "study-5": edge_list_graph(5, STUDY_EDGES),
        "complete-6": complete_graph(6),
        "4-regular-10": k_regular_graph(10, 4, seed=3),
    }


GRAPHS = _graphs()


def _at(schedule: str, graph: nx.Graph, round_: int, seed: int = 42, **kw: object) -> np.ndarray:
    return mixing_at(
        schedule,
        round_,
        num_nodes=graph.number_of_nodes(),
        W=mixing_matrix(graph),
        edges=graph.edges,
        seed=seed,
        epidemic_peers=PEERS,
        **kw,
    )


# ---------------------------------------------------------------------------
# every schedule, every graph, 50 rounds: the generic properties
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("name", list(GRAPHS))
def test_every_round_is_valid_on_its_allowed_pairs(schedule: str, name: str) -> None:
    graph = GRAPHS[name]
    n = graph.number_of_nodes()
    W = mixing_matrix(graph)
    for t in ROUNDS:
        Wt = _at(schedule, graph, t)
        assert isinstance(Wt, np.ndarray) and Wt.dtype == np.float64 and Wt.shape == (n, n)
        assert np.all(Wt >= 0)
        assert np.allclose(Wt.sum(axis=1), 1.0, atol=1e-12)
        support = round_support(schedule, t, num_nodes=n, edges=graph.edges)
        assert not np.any((Wt > 0) & ~support)
        promised = promises_doubly_stochastic(schedule, W)
        if promised:
            assert np.allclose(Wt.sum(axis=0), 1.0, atol=1e-12)
        validate_round(Wt, support=support, doubly_stochastic=promised, schedule=schedule, round_=t)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_the_same_inputs_give_the_same_matrix(schedule: str) -> None:
    graph = GRAPHS["4-regular-10"]
    for t in (1, 7, 50):
        first = _at(schedule, graph, t, seed=5)
        assert np.array_equal(first, _at(schedule, graph, t, seed=5))
        # the order the edges are listed in does not matter
        shuffled = list(graph.edges)[::-1]
        again = mixing_at(
            schedule, t, num_nodes=10, W=mixing_matrix(graph), edges=shuffled, seed=5, epidemic_peers=PEERS
        )
        assert np.array_equal(first, again)


@pytest.mark.parametrize("schedule", ["random-matching", "epidemic"])
def test_random_schedules_change_with_round_and_seed(schedule: str) -> None:
    graph = GRAPHS["4-regular-10"]
    by_round = {_at(schedule, graph, t).tobytes() for t in ROUNDS}
    by_seed = {_at(schedule, graph, 1, seed=s).tobytes() for s in range(20)}
    assert len(by_round) > 25 and len(by_seed) > 10


def test_static_is_the_given_matrix_every_round() -> None:
    graph = GRAPHS["study-5"]
    W = mixing_matrix(graph)
    for t in ROUNDS:
        assert np.array_equal(_at("static", graph, t), W)
    assert PROMISES_DOUBLY_STOCHASTIC["static"] is None
    assert promises_doubly_stochastic("static", W)
    assert not promises_doubly_stochastic("static", mixing_matrix(graph, "uniform"))


# ---------------------------------------------------------------------------
# random-matching
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(GRAPHS))
def test_random_matching_is_a_maximal_matching_of_graph_edges(name: str) -> None:
    graph = GRAPHS[name]
    n = graph.number_of_nodes()
    for t in ROUNDS:
        Wt = _at("random-matching", graph, t)
        assert np.array_equal(Wt, Wt.T)
        pairs = {(min(j, i), max(j, i)) for j, i in round_edges(Wt)}
        assert all(graph.has_edge(u, v) for u, v in pairs)
        matched = [x for pair in pairs for x in pair]
        assert len(matched) == len(set(matched))  # each node in at most one pair
        for u, v in pairs:
            assert Wt[u, v] == Wt[v, u] == Wt[u, u] == Wt[v, v] == 0.5
        for i in set(range(n)) - set(matched):
            assert Wt[i, i] == 1.0
        # maximal: no edge has both ends free
        assert all(u in matched or v in matched for u, v in graph.edges)


# ---------------------------------------------------------------------------
# one-peer-exponential
# ---------------------------------------------------------------------------


def test_one_peer_exponential_hand_checked_for_8_nodes() -> None:
    offsets = {1: 1, 2: 2, 3: 4, 4: 1}
    for t, offset in offsets.items():
        Wt = mixing_at("one-peer-exponential", t, num_nodes=8)
        expected = np.zeros((8, 8))
        for i in range(8):
            expected[i, i] = 0.5
            expected[i, (i + offset) % 8] = 0.5
        assert np.array_equal(Wt, expected)
        assert round_edges(Wt) == sorted(((i + offset) % 8, i) for i in range(8))
        assert models_sent(Wt).tolist() == [1] * 8
    assert exponential_offset(8, 0) == 1 and exponential_offset(8, 3) == 1


@pytest.mark.parametrize("n", [2, 3, 5, 6, 7, 12])
def test_one_peer_exponential_pairs_exactly_i_to_i_plus_2k(n: int) -> None:
    tau = math.ceil(math.log2(n))
    for t in ROUNDS:
        Wt = mixing_at("one-peer-exponential", t, num_nodes=n)
        offset = 2 ** ((t - 1) % tau)
        assert offset < n
        assert {(i, j) for i, j in zip(*np.nonzero(Wt)) if i != j} == {(i, (i + offset) % n) for i in range(n)}
        assert np.allclose(Wt.sum(axis=0), 1.0)


@pytest.mark.parametrize("n", [8, 16])
def test_one_peer_exponential_averages_exactly_in_log2_n_rounds(n: int) -> None:
    """Ying et al. 2021: for n a power of 2, tau = log2(n) consecutive one-peer steps give (1/n) 1 1^T."""
    tau = int(math.log2(n))
    for start in (1, 2, tau + 1):
        product = np.eye(n)
        for t in range(start, start + tau):
            product = mixing_at("one-peer-exponential", t, num_nodes=n) @ product
        assert np.allclose(product, np.full((n, n), 1.0 / n), atol=1e-15)
    # fewer steps do not average
    partial = np.eye(n)
    for t in range(1, tau):
        partial = mixing_at("one-peer-exponential", t, num_nodes=n) @ partial
    assert not np.allclose(partial, 1.0 / n)
    # gossip-steps = log2 n within one round: every round averages exactly
    for round_ in (1, 2, 3):
        product = np.eye(n)
        for step in range(tau):
            Wt = mixing_at("one-peer-exponential", round_, num_nodes=n, step=step, gossip_steps=tau)
            product = Wt @ product
        assert np.allclose(product, 1.0 / n, atol=1e-15)


# ---------------------------------------------------------------------------
# epidemic
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("n", [5, 6, 10])
@pytest.mark.parametrize("peers", [1, 2, 4])
def test_epidemic_each_node_sends_to_s_others_and_averages_what_it_received(n: int, peers: int) -> None:
    for t in ROUNDS:
        Wt = mixing_at("epidemic", t, num_nodes=n, seed=1, epidemic_peers=peers)
        sent = round_edges(Wt)
        assert models_sent(Wt).tolist() == [peers] * n  # column j: s distinct receivers
        assert all(j != i for j, i in sent)
        for i in range(n):
            senders = [j for j, r in sent if r == i]
            row = np.flatnonzero(Wt[i])
            assert sorted(row.tolist()) == sorted([i, *senders])  # 1 + r_i non-zeros
            assert np.allclose(Wt[i, row], 1.0 / (1 + len(senders)))
        validate_round(Wt, support=round_support("epidemic", t, num_nodes=n), doubly_stochastic=False)


def test_epidemic_is_not_doubly_stochastic_in_general() -> None:
    sums = [mixing_at("epidemic", t, num_nodes=10, seed=0, epidemic_peers=2).sum(axis=0) for t in ROUNDS]
    assert any(not np.allclose(s, 1.0) for s in sums)


def test_epidemic_draws_receivers_uniformly() -> None:
    n, peers, rounds = 5, 2, 2000
    counts = np.zeros((n, n))
    for t in range(1, rounds + 1):
        for j, i in round_edges(mixing_at("epidemic", t, num_nodes=n, seed=3, epidemic_peers=peers)):
            counts[j, i] += 1
    p = peers / (n - 1)
    off = ~np.eye(n, dtype=bool)
    assert np.all(counts[~off] == 0)
    assert np.all(np.abs(counts[off] - rounds * p) < 5 * math.sqrt(rounds * p * (1 - p)))


# ---------------------------------------------------------------------------
# sparse output for many nodes
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_many_nodes_give_csr_equal_to_dense(schedule: str) -> None:
    n = SPARSE_ABOVE + 44
    graph = ring_graph(n)
    kw = {"num_nodes": n, "W": mixing_matrix(graph), "edges": graph.edges, "seed": 9, "epidemic_peers": 3}
    Ws = mixing_at(schedule, 4, **kw)
    Wd = mixing_at(schedule, 4, sparse=False, **kw)
    assert sp.issparse(Ws) and isinstance(Wd, np.ndarray)
    assert np.array_equal(Ws.toarray(), Wd)
    assert round_edges(Ws) == round_edges(Wd)
    assert np.array_equal(models_sent(Ws), models_sent(Wd))
    support = round_support(schedule, 4, num_nodes=n, edges=graph.edges)
    promised = promises_doubly_stochastic(schedule, kw["W"])
    validate_round(Ws, support=support, doubly_stochastic=promised, schedule=schedule, round_=4)
    assert isinstance(mixing_at(schedule, 4, sparse=True, **{**kw, "num_nodes": n}), sp.csr_matrix)


# ---------------------------------------------------------------------------
# validate_round fires
# ---------------------------------------------------------------------------


def test_validate_round_names_schedule_round_and_entry() -> None:
    graph = GRAPHS["ring-8"]
    support = round_support("random-matching", 3, num_nodes=8, edges=graph.edges)
    good = _at("random-matching", graph, 3)
    validate_round(good, support=support, doubly_stochastic=True, schedule="random-matching", round_=3)
    validate_round(good, support=list(graph.edges), doubly_stochastic=True)  # edges as the support

    off_graph = np.eye(8)
    off_graph[0, 0] = off_graph[4, 4] = 0.5
    off_graph[0, 4] = off_graph[4, 0] = 0.5
    with pytest.raises(ValueError, match=r"mixing-schedule 'random-matching', round 3: W\[0, 4\] = 0.5 but node 4"):
        validate_round(off_graph, support=support, doubly_stochastic=True, schedule="random-matching", round_=3)

    negative = np.eye(8)
    negative[0, 0], negative[0, 1] = 1.5, -0.5
    with pytest.raises(ValueError, match=r"round 3: W\[0, 1\] = -0.5; every weight must be finite and >= 0"):
        validate_round(negative, support=support, doubly_stochastic=False, schedule="static", round_=3)

    short = np.eye(8)
    short[2, 2] = 0.9
    with pytest.raises(ValueError, match=r"'epidemic', round 7: row 2 of W\(t\) sums to 0.9"):
        validate_round(short, support=support, doubly_stochastic=False, schedule="epidemic", round_=7)

    lopsided = np.eye(8)
    lopsided[1] = 0.0
    lopsided[1, 0] = 1.0  # rows fine, column 0 sums to 2
    with pytest.raises(ValueError, match=r"column 0 of W\(t\) sums to 2"):
        validate_round(lopsided, support=support, doubly_stochastic=True, schedule="one-peer-exponential", round_=1)
    validate_round(lopsided, support=support, doubly_stochastic=False)


# ---------------------------------------------------------------------------
# run-config checks
# ---------------------------------------------------------------------------


def test_check_schedule_messages() -> None:
    with pytest.raises(ValueError) as info:
        check_schedule("foo", 5, 1)
    assert str(info.value) == (
        "mixing-schedule: 'foo' is not a known schedule; allowed: static, random-matching, one-peer-exponential, epidemic"
    )
    with pytest.raises(ValueError) as info:
        check_schedule("epidemic", 5, 0)
    assert str(info.value) == "epidemic-peers: 0 is outside 1..num-nodes-1 (num-nodes is 5)"
    with pytest.raises(ValueError, match=r"epidemic-peers: 5 is outside 1\.\.num-nodes-1 \(num-nodes is 5\)"):
        check_schedule("epidemic", 5, 5)
    with pytest.raises(ValueError, match="epidemic-peers: 'two' must be an integer"):
        check_schedule("epidemic", 5, "two")
    with pytest.raises(ValueError, match="num-nodes: 1 is too small for mixing-schedule 'one-peer-exponential'"):
        check_schedule("one-peer-exponential", 1, 1)
    for schedule in ("static", "random-matching", "one-peer-exponential"):
        check_schedule(schedule, 5, 0)  # epidemic-peers is read by epidemic only
    check_schedule("epidemic", 5, 4)


def test_check_gossip_steps() -> None:
    with pytest.raises(ValueError) as info:
        check_gossip_steps(0)
    assert str(info.value) == "gossip-steps: 0 must be an integer >= 1"
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(ValueError, match=r"gossip-steps: .* must be an integer >= 1"):
            check_gossip_steps(bad)
    check_gossip_steps(1)
    check_gossip_steps(np.int64(3))


def test_mixing_at_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="mixing-schedule: 'ring'"):
        mixing_at("ring", 1, num_nodes=4)
    with pytest.raises(ValueError, match="round: 0 must be an integer >= 1"):
        mixing_at("one-peer-exponential", 0, num_nodes=4)
    with pytest.raises(ValueError, match=r"step: 2 is outside 0\.\.gossip-steps-1 \(gossip-steps is 2\)"):
        mixing_at("one-peer-exponential", 1, num_nodes=4, step=2, gossip_steps=2)
    with pytest.raises(ValueError, match="pass the topology's mixing matrix W"):
        mixing_at("static", 1, num_nodes=4)
    with pytest.raises(ValueError, match="pass the topology's edges"):
        mixing_at("random-matching", 1, num_nodes=4)
    with pytest.raises(ValueError, match=r"W has shape \(3, 3\); expected \(4, 4\)"):
        mixing_at("static", 1, num_nodes=4, W=np.eye(3))
    with pytest.raises(ValueError, match=r"edges: \(2, 7\) is not an edge"):
        mixing_at("random-matching", 1, num_nodes=4, edges=[(2, 7)])
    with pytest.raises(ValueError, match="epidemic-peers: 4 is outside"):
        mixing_at("epidemic", 1, num_nodes=4, epidemic_peers=4)
    with pytest.raises(ValueError, match="seed: -1 must be an integer >= 0"):
        mixing_at("epidemic", 1, num_nodes=4, seed=-1)
