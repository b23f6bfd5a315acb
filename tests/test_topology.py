"""Tests for flower_dl.topology, compared against independently computed values."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest

from flower_dl.topology import (
    BUILDERS,
    MIXINGS,
    STUDY_EDGES,
    TOPOLOGIES,
    TopologyError,
    build_graph,
    check_connected,
    check_topology,
    describe,
    edge_list_graph,
    mixing_matrix,
    neighbours,
    parse_edges,
    spectral_gap,
    validate_mixing_matrix,
)

from .conftest import python_output

# ---------------------------------------------------------------------------
# parse_edges
# ---------------------------------------------------------------------------


def test_parse_edges_basic_whitespace_and_dedup() -> None:
    assert parse_edges("0-1,0-2, 2-4", 5) == [(0, 1), (0, 2), (2, 4)]
    assert parse_edges(" 0 - 1 ,1-0,0-1, 3-2 ", 5) == [(0, 1), (2, 3)]
    assert parse_edges(STUDY_EDGES, 5) == [(0, 1), (0, 2), (0, 3), (2, 4)]


@pytest.mark.parametrize(
    ("spec", "fragments"),
    [
        ("0-7", ["edges", "'0-7'", "node 7", "num-nodes is 5", "0..4"]),
        ("0-1,9-2", ["edges", "'9-2'", "node 9", "0..4"]),
        ("3-3", ["edges", "'3-3'", "self-loop"]),
        ("a-b", ["edges", "'a-b'", "'i-j'", "0-1,0-2,2-4"]),
        ("0-1,,1-2", ["edges", "''", "'i-j'"]),
        ("0-1-2", ["edges", "'0-1-2'", "'i-j'"]),
        ("-1-2", ["edges", "'-1-2'", "'i-j'"]),
        ("", ["edges", "empty"]),
        ("   ", ["edges", "empty"]),
    ],
)
def test_parse_edges_errors(spec: str, fragments: list[str]) -> None:
    with pytest.raises(TopologyError) as info:
        parse_edges(spec, 5)
    for fragment in fragments:
        assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)


# ---------------------------------------------------------------------------
# builders
# ---------------------------------------------------------------------------

# (name, num_nodes, kwargs, expected sorted degree sequence or None)
BUILD_CASES = [
    ("edges", 5, {}, [1, 1, 1, 2, 3]),
    ("ring", 6, {}, [2] * 6),
    ("star", 6, {}, [1] * 5 + [5]),
    ("full", 7, {}, [6] * 7),
    ("line", 5, {}, [1, 1, 2, 2, 2]),
    ("torus", 16, {}, [4] * 16),
    ("torus", 12, {}, [4] * 12),
    ("torus", 9, {}, [4] * 9),
    ("erdos-renyi", 12, {"prob": 0.3, "seed": 3}, None),
    ("k-regular", 10, {"degree": 3, "seed": 1}, [3] * 10),
    ("k-regular", 12, {"degree": 4, "seed": 5}, [4] * 12),
    ("small-world", 12, {"degree": 4, "prob": 0.3, "seed": 2}, None),
    ("exponential", 8, {}, [5] * 8),
    ("exponential", 16, {}, [7] * 16),
]


@pytest.mark.parametrize(("name", "n", "kwargs", "degrees"), BUILD_CASES)
def test_builder_nodes_connected_degrees(name: str, n: int, kwargs: dict, degrees: list[int] | None) -> None:
    g = build_graph(name, n, **kwargs)
    assert isinstance(g, nx.Graph) and not g.is_directed()
    assert list(g.nodes) == list(range(n))
    assert all(type(v) is int for v in g.nodes)
    assert nx.number_of_selfloops(g) == 0
    assert nx.is_connected(g)
    check_connected(g)
    if degrees is not None:
        assert sorted(d for _, d in g.degree()) == degrees


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("erdos-renyi", {"prob": 0.25}),
        ("k-regular", {"degree": 3}),
        ("small-world", {"degree": 4, "prob": 0.5}),
    ],
)
def test_random_builders_deterministic(name: str, kwargs: dict) -> None:
    a = build_graph(name, 14, seed=11, **kwargs)
    b = build_graph(name, 14, seed=11, **kwargs)
    assert sorted(a.edges) == sorted(b.edges)
    assert nx.is_connected(a)
    # different seeds usually give different graphs; at least one of several must differ
    others = [sorted(build_graph(name, 14, seed=s, **kwargs).edges) for s in range(12, 16)]
    assert any(o != sorted(a.edges) for o in others)


def test_edges_builder_matches_study_tree() -> None:
    g = build_graph("edges", 5)
    assert sorted(g.edges) == [(0, 1), (0, 2), (0, 3), (2, 4)]
    assert dict(g.degree()) == {0: 3, 1: 1, 2: 2, 3: 1, 4: 1}


def test_ring_star_line_full_match_networkx() -> None:
    n = 9
    assert nx.utils.edges_equal(build_graph("ring", n).edges, nx.cycle_graph(n).edges)
    assert nx.utils.edges_equal(build_graph("line", n).edges, nx.path_graph(n).edges)
    assert nx.utils.edges_equal(build_graph("full", n).edges, nx.complete_graph(n).edges)
    star = build_graph("star", n)
    assert neighbours(star, 0) == list(range(1, n))
    assert all(neighbours(star, i) == [0] for i in range(1, n))


@pytest.mark.parametrize(("n", "shape"), [(16, (4, 4)), (12, (3, 4)), (18, (3, 6)), (36, (6, 6))])
def test_torus_shape_and_isomorphism(n: int, shape: tuple[int, int]) -> None:
    g = build_graph("torus", n)
    assert nx.is_isomorphic(g, nx.grid_2d_graph(*shape, periodic=True))
    r, c = shape
    # row-major labelling: node 0's neighbours are right, left, down, up
    assert neighbours(g, 0) == sorted({1, c - 1, c, (r - 1) * c})


def test_exponential_n8_neighbours() -> None:
    g = build_graph("exponential", 8)
    # i +/- 1, i +/- 2, i + 4
    assert neighbours(g, 0) == [1, 2, 4, 6, 7]
    assert neighbours(g, 3) == [1, 2, 4, 5, 7]
    assert all(d == 5 for _, d in g.degree())


@pytest.mark.parametrize(
    ("name", "n", "kwargs", "fragments"),
    [
        ("foo", 5, {}, ["topology", "'foo'", "edges, ring, star"]),
        ("ring", 1, {}, ["num-nodes", "1"]),
        ("full", 0, {}, ["num-nodes", "0"]),
        ("ring", 2, {}, ["num-nodes", "2"]),
        ("torus", 10, {}, ["num-nodes", "10", "9, 12, 15, 16"]),
        ("torus", 8, {}, ["num-nodes", "8"]),
        ("edges", 5, {"edges": "0-9"}, ["edges", "'0-9'"]),
        ("erdos-renyi", 10, {"prob": 0.0}, ["edge-prob", "0.0"]),
        ("erdos-renyi", 10, {"prob": 1.5}, ["edge-prob", "1.5"]),
        ("k-regular", 5, {"degree": 3}, ["degree", "3", "even"]),
        ("k-regular", 5, {"degree": 5}, ["degree", "5"]),
        ("k-regular", 6, {"degree": 1}, ["degree", "1"]),
        ("small-world", 10, {"degree": 3}, ["degree", "3", "even"]),
        ("small-world", 10, {"degree": 10}, ["degree", "10"]),
    ],
)
def test_build_graph_errors(name: str, n: int, kwargs: dict, fragments: list[str]) -> None:
    with pytest.raises(TopologyError) as info:
        build_graph(name, n, **kwargs)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_all_topologies_buildable_and_mixable() -> None:
    sizes = {"torus": 9, "edges": 5}
    for name in TOPOLOGIES:
        g = build_graph(name, sizes.get(name, 8), prob=0.5, degree=4)
        for kind in MIXINGS:
            W = mixing_matrix(g, kind)
            assert W.dtype == np.float64 and W.shape == (g.number_of_nodes(),) * 2


# Edge lists of today's graphs, recorded with the if-chain build_graph of the commit before
# the registry (git show HEAD:flower_dl/topology.py, networkx 3.6.1): the registry must
# return the same edges in the same order, on nodes 0..n-1 in order, for the same seed.
RECORDED = [
    ("edges", 5, {}, "0-1,0-2,0-3,2-4"),
    ("edges", 6, {"edges": "4-5, 3-2,1-0,2-4,0-3,1-0"}, "0-1,0-3,2-3,2-4,4-5"),
    ("ring", 7, {}, "0-1,0-6,1-2,2-3,3-4,4-5,5-6"),
    ("star", 6, {}, "0-1,0-2,0-3,0-4,0-5"),
    ("star", 2, {}, "0-1"),
    ("full", 5, {}, "0-1,0-2,0-3,0-4,1-2,1-3,1-4,2-3,2-4,3-4"),
    ("line", 6, {}, "0-1,1-2,2-3,3-4,4-5"),
    (
        "torus",
        12,
        {},
        "0-1,0-3,0-4,0-8,1-2,1-5,1-9,2-3,2-6,2-10,3-7,3-11,4-5,4-7,4-8,5-6,5-9,6-7,6-10,7-11,8-9,8-11,9-10,10-11",
    ),
    ("torus", 9, {}, "0-1,0-2,0-3,0-6,1-2,1-4,1-7,2-5,2-8,3-4,3-5,3-6,4-5,4-7,5-8,6-7,6-8,7-8"),
    (
        "exponential",
        10,
        {},
        "0-1,0-2,0-4,0-6,0-8,0-9,1-2,1-3,1-5,1-7,1-9,2-3,2-4,2-6,2-8,3-4,3-5,3-7,3-9,4-5,4-6,4-8,5-6,5-7,5-9,"
        "6-7,6-8,7-8,7-9,8-9",
    ),
    ("exponential", 2, {}, "0-1"),
    ("erdos-renyi", 8, {"prob": 0.4, "seed": 0}, "0-1,0-4,1-3,1-4,2-3,2-6,3-5,3-6,4-6,4-7,5-7,6-7"),
    ("erdos-renyi", 8, {"prob": 0.4, "seed": 2}, "0-3,0-4,1-2,1-6,2-3,3-5,3-6,3-7,4-6,4-7"),
    ("erdos-renyi", 8, {"prob": 0.4, "seed": 5}, "0-7,1-6,2-3,2-6,2-7,3-4,3-7,4-6,5-6,5-7"),
    (
        "erdos-renyi",
        12,
        {"prob": 0.25, "seed": 7},
        "0-2,0-4,0-7,0-9,0-11,1-2,1-5,1-6,2-3,2-6,2-7,2-10,3-7,3-8,3-9,4-11,6-7,6-10,7-8",
    ),
    ("k-regular", 8, {"degree": 3, "seed": 0}, "0-1,0-6,0-7,1-3,1-7,2-4,2-5,2-7,3-4,3-6,4-5,5-6"),
    ("k-regular", 8, {"degree": 3, "seed": 1}, "0-1,0-3,0-4,1-4,1-7,2-3,2-5,2-6,3-7,4-6,5-6,5-7"),
    (
        "k-regular",
        10,
        {"degree": 4, "seed": 2},
        "0-1,0-2,0-5,0-9,1-2,1-3,1-7,2-8,2-9,3-4,3-6,3-8,4-5,4-7,4-8,5-6,5-9,6-7,6-8,7-9",
    ),
    ("k-regular", 2, {"degree": 1, "seed": 0}, "0-1"),
    (
        "small-world",
        10,
        {"degree": 4, "prob": 0.3, "seed": 0},
        "0-1,0-4,0-8,0-9,1-2,1-4,1-6,1-9,2-3,2-4,3-5,3-8,4-5,4-6,5-6,5-7,6-7,7-8,7-9,8-9",
    ),
    (
        "small-world",
        10,
        {"degree": 4, "prob": 0.3, "seed": 1},
        "0-2,0-4,0-8,1-3,1-7,1-9,2-3,2-4,3-4,3-5,3-7,4-6,4-7,5-7,5-9,6-7,6-8,6-9,7-9,8-9",
    ),
    ("small-world", 9, {"degree": 2, "prob": 0.5, "seed": 3}, "0-2,0-3,1-7,2-3,2-8,4-5,5-8,6-8,7-8"),
]


@pytest.mark.parametrize(("name", "n", "kwargs", "expected"), RECORDED)
def test_registry_builds_the_same_graphs_as_the_if_chain(name: str, n: int, kwargs: dict, expected: str) -> None:
    g = build_graph(name, n, **kwargs)
    assert list(g.nodes) == list(range(n))
    assert ",".join(f"{u}-{v}" for u, v in g.edges) == expected


def test_every_topology_name_is_recorded_against_the_if_chain() -> None:
    assert {name for name, *_ in RECORDED} == set(TOPOLOGIES)


# ---------------------------------------------------------------------------
# registry and check_topology
# ---------------------------------------------------------------------------


def test_topologies_come_from_the_registry_in_the_old_order() -> None:
    assert tuple(BUILDERS) == TOPOLOGIES
    assert TOPOLOGIES == (
        "edges",
        "ring",
        "star",
        "full",
        "line",
        "torus",
        "erdos-renyi",
        "k-regular",
        "small-world",
        "exponential",
    )
    for family in BUILDERS.values():
        assert callable(family.build) and callable(family.check)
        assert set(family.params) <= {"edges", "degree", "prob", "seed"}


def test_check_topology_accepts_what_build_graph_builds() -> None:
    for name, n, kwargs, _ in [*BUILD_CASES, *RECORDED]:
        check_topology(name, n, **{k: v for k, v in kwargs.items() if k != "seed"})


def test_check_topology_checks_only_the_keys_a_family_reads() -> None:
    # the run config passes every key; a ring must not fail on an edge list meant for 5 nodes
    check_topology("ring", 100, edges=STUDY_EDGES, degree=3, prob=0.0)
    check_topology("edges", 5, degree="x", prob="y")  # type: ignore[arg-type]
    build_graph("ring", 4, seed="not used")  # type: ignore[arg-type]


# (name, num_nodes, kwargs, key the message starts with, value it names, fragment of what is allowed)
CHECK_ERRORS = [
    ("hypercube", 8, {}, "topology", "'hypercube'", "allowed: edges, ring, star, full, line, torus"),
    (None, 8, {}, "topology", "None", "allowed: edges"),
    ("ring", 1, {}, "num-nodes", "1", "allowed: an integer >= 2"),
    ("full", 2.0, {}, "num-nodes", "2.0", "not an integer"),
    ("star", True, {}, "num-nodes", "True", "not an integer"),
    ("ring", 2, {}, "num-nodes", "2", "allowed: an integer >= 3"),
    ("small-world", 2, {}, "num-nodes", "2", "allowed: an integer >= 3"),
    ("torus", 10, {}, "num-nodes", "10", "allowed: num-nodes = r x c with r, c >= 3"),
    ("torus", 101, {}, "num-nodes", "101", "nearest: 100 and 102"),
    ("edges", 3, {"edges": "0-3"}, "edges", "'0-3'", "names node 3, but num-nodes is 3 (allowed node ids: 0..2)"),
    ("edges", 5, {"edges": 7}, "edges", "7", "'i-j'"),
    ("edges", 5, {"edges": "0-1,2-3,3-4"}, "edges", "'0-1,2-3,3-4'", "needs a connected graph"),
    ("k-regular", 5, {"degree": 3}, "degree", "3", "allowed: an even degree with 2 <= degree < num-nodes (5)"),
    ("k-regular", 5, {"degree": 5}, "degree", "5", "allowed: an even degree"),
    ("k-regular", 6, {"degree": 1}, "degree", "1", "allowed: a degree with 2 <= degree < num-nodes (6)"),
    ("k-regular", 6, {"degree": 0}, "degree", "0", "allowed: a degree"),
    ("k-regular", 2, {"degree": 2}, "degree", "2", "allowed: degree 1"),
    ("k-regular", 6, {"degree": 2.5}, "degree", "2.5", "allowed: an integer"),
    ("small-world", 10, {"degree": 3}, "degree", "3", "allowed: an even degree with 2 <= degree < num-nodes (10)"),
    ("small-world", 10, {"prob": 1.5}, "edge-prob", "1.5", "allowed: a float in [0, 1]"),
    ("erdos-renyi", 10, {"prob": "high"}, "edge-prob", "'high'", "allowed: a float in [0, 1]"),
    ("erdos-renyi", 10, {"prob": -0.5}, "edge-prob", "-0.5", "allowed: a float in [0, 1]"),
    ("erdos-renyi", 10, {"prob": 0.0}, "edge-prob", "0.0", "allowed: 0 < edge-prob <= 1"),
]


@pytest.mark.parametrize(("name", "n", "kwargs", "key", "value", "allowed"), CHECK_ERRORS)
def test_check_topology_errors_start_with_key_then_value(name, n, kwargs, key, value, allowed) -> None:
    for check in (check_topology, build_graph):  # build_graph runs the same checks
        with pytest.raises(TopologyError) as info:
            check(name, n, **kwargs)
        msg = str(info.value)
        assert msg.startswith(f"{key}: {value} "), msg
        assert allowed in msg, msg


def test_check_topology_reports_the_components_of_a_disconnected_edge_list() -> None:
    with pytest.raises(TopologyError) as info:
        check_topology("edges", 5, edges="0-1,2-3,3-4")
    assert str(info.value) == (
        "edges: '0-1,2-3,3-4' gives a disconnected graph: 2 components {0, 1} and {2, 3, 4}; "
        "decentralized learning needs a connected graph"
    )
    with pytest.raises(TopologyError, match=r"2 components \{0, 1\} and \{2, 3, 4\}"):
        build_graph("edges", 5, edges="0-1,2-3,3-4")
    # a few isolated nodes are listed (the study tree on 6 nodes) ...
    with pytest.raises(TopologyError, match=r"2 components \{0, 1, 2, 3, 4\} and \{5\}"):
        check_topology("edges", 6)
    # ... many are counted, and a large component shows its first nodes and its size
    with pytest.raises(TopologyError, match=r"99 components \{0, 99\}, \{1\}, \{2\}, \{3\} and 95 more;"):
        check_topology("edges", 100, edges="0-99")
    chain = ",".join(f"{i}-{i + 1}" for i in range(1, 20))
    with pytest.raises(TopologyError, match=r"2 components \{0\} and \{1, 2, 3, 4, 5, 6, \.\.\. \(20 nodes\)\}"):
        check_topology("edges", 21, edges=chain)


def test_check_topology_one_line_when_num_nodes_outgrows_the_edge_list() -> None:
    with pytest.raises(TopologyError) as info:
        check_topology("edges", 100_000)
    msg = str(info.value)
    assert msg.startswith("edges: '0-1,0-2,0-3,2-4' names only nodes 0..4, but num-nodes is 100000: "), msg
    assert "nodes 5..99999 have no edge" in msg and "0..99999" in msg and "ring" in msg
    assert "\n" not in msg and len(msg) < 300
    # a huge edge list is quoted by its start and its length
    spec = ",".join(f"{i}-{i + 1}" for i in range(50_000))
    with pytest.raises(TopologyError) as info:
        check_topology("edges", 100_000, edges=spec)
    msg = str(info.value)
    assert msg.startswith("edges: '0-1,1-2,") and f"({len(spec)} characters)" in msg and "nodes 50001..99999" in msg
    assert len(msg) < 300


def test_check_topology_does_not_import_networkx() -> None:
    code = (
        "import sys, flower_dl.topology as t\n"
        "t.check_topology('edges', 5)\n"
        "for name in t.TOPOLOGIES:\n"
        "    t.check_topology(name, 16, edges=','.join(f'0-{i}' for i in range(1, 16)), degree=4)\n"
        "for name, n in [('edges', 100000), ('torus', 10), ('k-regular', 5)]:\n"
        "    try:\n"
        "        t.check_topology(name, n, degree=3)\n"
        "    except t.TopologyError:\n"
        "        pass\n"
        "print('networkx' in sys.modules)\n"
    )
    assert python_output(code, timeout=60) == "False"


def test_random_families_can_still_fail_at_build_time() -> None:
    check_topology("erdos-renyi", 30, prob=0.001)  # valid, but no connected sample exists in practice
    with pytest.raises(TopologyError) as info:
        build_graph("erdos-renyi", 30, prob=0.001)
    assert str(info.value).startswith("edge-prob: 0.001 gave no connected Erdos-Renyi graph on 30 nodes"), info.value
    with pytest.raises(TopologyError, match=r"^seed: 'x' is not an integer"):
        build_graph("k-regular", 6, degree=2, seed="x")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# connectivity
# ---------------------------------------------------------------------------


def test_check_connected_lists_components() -> None:
    g = edge_list_graph(5, "0-1,1-2,3-4")  # build_graph refuses it: check_topology checks connectivity
    with pytest.raises(TopologyError) as info:
        check_connected(g)
    msg = str(info.value)
    assert "disconnected" in msg
    assert "2 components {0, 1, 2} and {3, 4}" in msg


def test_check_connected_isolated_nodes_listed() -> None:
    g = edge_list_graph(5, "0-1")
    with pytest.raises(TopologyError, match=r"4 components \{0, 1\}, \{2\}, \{3\} and \{4\}"):
        check_connected(g)
    with pytest.raises(TopologyError, match="disconnected"):
        mixing_matrix(g)


# ---------------------------------------------------------------------------
# mixing matrices
# ---------------------------------------------------------------------------

# Hand-worked Metropolis weights for the study tree 0-1, 0-2, 0-3, 2-4
# (degrees 3, 1, 2, 1, 1):  W_0j = 1/(1+3) = 1/4 for j = 1, 2, 3;  W_24 = 1/(1+2) = 1/3;
# diagonals 1 - row sum:  W_00 = 1/4, W_11 = 3/4, W_22 = 1 - 1/4 - 1/3 = 5/12,
# W_33 = 3/4, W_44 = 2/3.
STUDY_W = np.array(
    [
        [1 / 4, 1 / 4, 1 / 4, 1 / 4, 0],
        [1 / 4, 3 / 4, 0, 0, 0],
        [1 / 4, 0, 5 / 12, 0, 1 / 3],
        [1 / 4, 0, 0, 3 / 4, 0],
        [0, 0, 1 / 3, 0, 2 / 3],
    ]
)


def test_metropolis_study_tree_hand_worked() -> None:
    W = mixing_matrix(build_graph("edges", 5, edges=STUDY_EDGES), "metropolis")
    np.testing.assert_allclose(W, STUDY_W, rtol=0, atol=1e-15)
    assert W.dtype == np.float64


@pytest.mark.parametrize(
    ("name", "n", "expected"),
    [
        ("ring", 16, 0.0507),
        ("ring", 32, 0.0128),
        ("torus", 16, 0.4000),
        ("full", 7, 1.0),
    ],
)
def test_metropolis_spectral_gap_table(name: str, n: int, expected: float) -> None:
    gap = spectral_gap(mixing_matrix(build_graph(name, n), "metropolis"))
    assert gap == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("n", [5, 8, 16, 33])
def test_ring_gap_closed_form(n: int) -> None:
    gap = spectral_gap(mixing_matrix(build_graph("ring", n)))
    slem = max(abs((1 + 2 * math.cos(2 * math.pi * k / n)) / 3) for k in range(1, n))
    assert gap == pytest.approx(1 - slem, abs=1e-12)
    if n >= 6:  # then the k = 1 eigenvalue dominates
        assert gap == pytest.approx(1 - (1 + 2 * math.cos(2 * math.pi / n)) / 3, abs=1e-12)


@pytest.mark.parametrize(("name", "n"), [("ring", 10), ("star", 6), ("line", 6), ("torus", 12)])
def test_metropolis_doubly_stochastic_symmetric(name: str, n: int) -> None:
    W = mixing_matrix(build_graph(name, n))
    np.testing.assert_allclose(W, W.T, atol=0)
    np.testing.assert_allclose(W.sum(axis=0), 1, atol=1e-12)
    np.testing.assert_allclose(W.sum(axis=1), 1, atol=1e-12)
    assert (W >= 0).all()


def test_uniform_star_row_stochastic_not_symmetric() -> None:
    n = 5
    W = mixing_matrix(build_graph("star", n), "uniform")
    expected = np.zeros((n, n))
    expected[0, :] = 1 / n
    for i in range(1, n):
        expected[i, 0] = expected[i, i] = 1 / 2
    np.testing.assert_allclose(W, expected, atol=1e-15)
    np.testing.assert_allclose(W.sum(axis=1), 1, atol=1e-12)
    assert not np.allclose(W, W.T)
    assert not np.allclose(W.sum(axis=0), 1)
    # reference: second largest eigenvalue modulus of the literal expected matrix
    gap = spectral_gap(W)
    assert gap == pytest.approx(1 - max(sorted(np.abs(np.linalg.eigvals(expected)))[:-1]))
    with pytest.raises(TopologyError, match="not symmetric"):
        validate_mixing_matrix(W, symmetric=True)


@pytest.mark.parametrize(("name", "n"), [("ring", 7), ("torus", 9), ("full", 5)])
def test_uniform_equals_metropolis_on_regular(name: str, n: int) -> None:
    g = build_graph(name, n)
    np.testing.assert_allclose(mixing_matrix(g, "uniform"), mixing_matrix(g, "metropolis"), atol=1e-15)


def test_unknown_mixing() -> None:
    with pytest.raises(TopologyError) as info:
        mixing_matrix(build_graph("ring", 5), "laplacian")
    msg = str(info.value)
    assert "mixing" in msg and "'laplacian'" in msg and "metropolis, uniform" in msg


# ---------------------------------------------------------------------------
# validate_mixing_matrix
# ---------------------------------------------------------------------------


def _study_graph() -> nx.Graph:
    return build_graph("edges", 5)


def _negative() -> np.ndarray:
    W = STUDY_W.copy()
    W[1, 1], W[1, 0] = 1.1, -0.1
    return W


def _bad_row() -> np.ndarray:
    W = STUDY_W.copy()
    W[3, 3] = 0.5
    return W


def _asymmetric() -> np.ndarray:
    W = STUDY_W.copy()
    W[0, 1], W[0, 0] = 0.2, 0.3  # row 0 still sums to 1
    return W


def _non_edge() -> np.ndarray:
    W = STUDY_W.copy()
    W[1, 3] = W[3, 1] = 0.25
    W[1, 1] = W[3, 3] = 0.5
    return W


def _nan() -> np.ndarray:
    W = STUDY_W.copy()
    W[2, 2] = np.nan
    return W


@pytest.mark.parametrize(
    ("make", "kwargs", "fragments"),
    [
        (_negative, {}, ["negative", "W[1, 0]", "-0.1"]),
        (_bad_row, {}, ["row 3", "sum"]),
        (_asymmetric, {"symmetric": True}, ["not symmetric", "W[0, 1]", "W[1, 0]"]),
        (_non_edge, {"graph": "study"}, ["W[1, 3]", "not an edge"]),
        (_nan, {}, ["non-finite", "W[2, 2]"]),
        (lambda: np.ones((2, 3)) / 3, {}, ["square", "(2, 3)"]),
        (lambda: STUDY_W[:4, :4], {"graph": "study"}, ["row"]),
    ],
)
def test_validate_rejects(make, kwargs: dict, fragments: list[str]) -> None:
    kwargs = dict(kwargs)
    if kwargs.get("graph") == "study":
        kwargs["graph"] = _study_graph()
    with pytest.raises(TopologyError) as info:
        validate_mixing_matrix(make(), **kwargs)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_validate_accepts_and_shape_mismatch() -> None:
    validate_mixing_matrix(STUDY_W, _study_graph(), symmetric=True)
    # asymmetric but row-stochastic is fine unless symmetry is requested
    validate_mixing_matrix(_asymmetric())
    W4 = np.full((4, 4), 0.25)
    with pytest.raises(TopologyError, match=r"4, 4.*5 nodes"):
        validate_mixing_matrix(W4, _study_graph())


def test_validate_rejects_disconnected_graph() -> None:
    g = edge_list_graph(4, "0-1,2-3")
    W = np.kron(np.eye(2), np.full((2, 2), 0.5))
    with pytest.raises(TopologyError, match=r"2 components \{0, 1\} and \{2, 3\}"):
        validate_mixing_matrix(W, g, symmetric=True)


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def test_neighbours_sorted_and_unknown_node() -> None:
    g = build_graph("edges", 5)
    assert neighbours(g, 0) == [1, 2, 3]
    assert neighbours(g, 4) == [2]
    with pytest.raises(TopologyError, match="node: 9"):
        neighbours(g, 9)


def test_describe() -> None:
    g = build_graph("torus", 16)
    d = describe(g, mixing_matrix(g))
    assert d == {
        "num-nodes": 16,
        "num-edges": 32,
        "min-degree": 4,
        "max-degree": 4,
        "spectral-gap": pytest.approx(0.4, abs=1e-12),
        "regular": True,
    }
    s = describe(_study_graph(), STUDY_W)
    assert (s["num-nodes"], s["num-edges"], s["min-degree"], s["max-degree"]) == (5, 4, 1, 3)
    assert s["regular"] is False
    assert 0 < s["spectral-gap"] < 1
    assert s["spectral-gap"] == pytest.approx(1 - sorted(np.abs(np.linalg.eigvalsh(STUDY_W)))[-2], abs=1e-12)
