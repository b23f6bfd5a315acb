"""Graph builders and the topology registry of :mod:`flower_dl.topology`.

Each builder is a small pure function named after its graph, returning
``_normalised_graph(num_nodes, edges)``; :data:`BUILDERS` maps each topology
name to its :class:`GraphFamily` (builder, parameter check, parameters read).
:func:`check_topology` and :func:`build_graph` are the registry's two entry
points.  networkx is imported only inside the builders, so importing this
module (and running :func:`check_topology`) does not import it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flower_dl.topology.checks import (
    STUDY_EDGES,
    TopologyError,
    _check_degree,
    _check_edge_list,
    _check_erdos_renyi,
    _check_k_regular,
    _check_num_nodes,
    _check_prob,
    _check_ring,
    _check_seed,
    _check_small_world,
    _check_torus,
    _no_constraints,
    _torus_shape,
    parse_edges,
)

if TYPE_CHECKING:
    import networkx as nx

_MAX_TRIES = 1000


# ---------------------------------------------------------------------------
# graph builders: assume parameters that check_topology accepted
# ---------------------------------------------------------------------------


def _normalised_graph(num_nodes: int, edges: Iterable[tuple[int, int]]) -> nx.Graph:
    """Return a fresh undirected graph on nodes ``0..num_nodes-1`` with sorted edges.

    Every builder ends here, so that every topology has the same node order and
    edge order whatever networkx generator made it (mixing matrices and results
    are indexed by node id).
    """
    import networkx as nx

    clean = sorted({(min(int(u), int(v)), max(int(u), int(v))) for u, v in edges if u != v})
    graph = nx.Graph()
    graph.add_nodes_from(range(num_nodes))
    graph.add_edges_from(clean)
    return graph


def edge_list_graph(num_nodes: int, edges: str = STUDY_EDGES) -> nx.Graph:
    """Topology ``edges``: the graph given by an edge list (see :func:`parse_edges`).

    All ``num_nodes`` nodes are present, isolated ones too; connectivity is not
    checked here (:func:`check_topology` does), so tests and callers can build a
    disconnected graph on purpose.
    """
    return _normalised_graph(num_nodes, parse_edges(edges, num_nodes))


def ring_graph(num_nodes: int) -> nx.Graph:
    """Topology ``ring``: :func:`networkx.cycle_graph` (``num_nodes >= 3``)."""
    import networkx as nx

    return _normalised_graph(num_nodes, nx.cycle_graph(num_nodes).edges)


def star_graph(num_nodes: int) -> nx.Graph:
    """Topology ``star``: :func:`networkx.star_graph` with hub 0."""
    import networkx as nx

    return _normalised_graph(num_nodes, nx.star_graph(num_nodes - 1).edges)


def complete_graph(num_nodes: int) -> nx.Graph:
    """Topology ``full``: :func:`networkx.complete_graph`."""
    import networkx as nx

    return _normalised_graph(num_nodes, nx.complete_graph(num_nodes).edges)


def path_graph(num_nodes: int) -> nx.Graph:
    """Topology ``line``: :func:`networkx.path_graph` (networkx's ``line_graph`` is another thing)."""
    import networkx as nx

    return _normalised_graph(num_nodes, nx.path_graph(num_nodes).edges)


def torus_graph(num_nodes: int) -> nx.Graph:
    """Topology ``torus``: periodic ``r x c`` grid, ``r * c == num_nodes``, ``3 <= r <= c``.

    The grid is as square as possible (the smallest diameter for its size);
    node ``(i, j)`` becomes ``i * c + j`` (row-major).
    """
    import networkx as nx

    shape = _torus_shape(num_nodes)
    assert shape is not None, "check_topology accepts only sizes that have a torus shape"
    r, c = shape
    grid = nx.grid_2d_graph(r, c, periodic=True)
    return _normalised_graph(num_nodes, ((u[0] * c + u[1], v[0] * c + v[1]) for u, v in grid.edges))


def erdos_renyi_graph(num_nodes: int, prob: float = 0.5, seed: int = 0) -> nx.Graph:
    """Topology ``erdos-renyi``: :func:`networkx.erdos_renyi_graph` with edge probability ``prob``.

    Resampled with seeds ``seed, seed + 1, ...`` until connected (gossip needs a
    connected graph), at most 1000 tries; deterministic in ``seed``.

    Raises
    ------
    TopologyError
        Naming ``edge-prob`` if no sample was connected: ``prob`` is too small
        for ``num_nodes``, which only sampling can tell.
    """
    import networkx as nx

    p, s = float(prob), int(seed)
    for attempt in range(_MAX_TRIES):
        g = nx.erdos_renyi_graph(num_nodes, p, seed=s + attempt)
        if nx.is_connected(g):
            return _normalised_graph(num_nodes, g.edges)
    raise TopologyError(
        f"edge-prob: {prob!r} gave no connected Erdos-Renyi graph on {num_nodes} nodes in "
        f"{_MAX_TRIES} tries (seeds {s}..{s + _MAX_TRIES - 1}); use a larger edge-prob "
        f"(about ln(n)/n = {math.log(num_nodes) / num_nodes:.3g} or more)"
    )


def k_regular_graph(num_nodes: int, degree: int = 4, seed: int = 0) -> nx.Graph:
    """Topology ``k-regular``: :func:`networkx.random_regular_graph` of degree ``degree``.

    Resampled with seeds ``seed, seed + 1, ...`` until connected, at most 1000
    tries; deterministic in ``seed``.

    Raises
    ------
    TopologyError
        Naming ``degree`` if no sample was connected (practically unreachable
        for the degrees :func:`check_topology` accepts).
    """
    import networkx as nx

    d, s = int(degree), int(seed)
    for attempt in range(_MAX_TRIES):
        g = nx.random_regular_graph(d, num_nodes, seed=s + attempt)
        if nx.is_connected(g):
            return _normalised_graph(num_nodes, g.edges)
    raise TopologyError(  # pragma: no cover - practically unreachable
        f"degree: {d} gave no connected k-regular graph on {num_nodes} nodes in {_MAX_TRIES} tries"
    )


def small_world_graph(num_nodes: int, degree: int = 4, prob: float = 0.5, seed: int = 0) -> nx.Graph:
    """Topology ``small-world``: :func:`networkx.connected_watts_strogatz_graph`.

    A ring where each node links to its ``degree`` nearest neighbours (``degree``
    even), each edge rewired with probability ``prob``; networkx resamples until
    connected (at most 1000 tries).

    Raises
    ------
    TopologyError
        Naming ``edge-prob`` if no sample was connected (practically unreachable).
    """
    import networkx as nx

    try:
        g = nx.connected_watts_strogatz_graph(num_nodes, int(degree), float(prob), tries=_MAX_TRIES, seed=int(seed))
    except nx.NetworkXError as exc:  # pragma: no cover - practically unreachable
        raise TopologyError(
            f"edge-prob: {prob!r} gave no connected small-world graph in {_MAX_TRIES} tries ({exc})"
        ) from exc
    return _normalised_graph(num_nodes, g.edges)


def exponential_graph(num_nodes: int) -> nx.Graph:
    """Topology ``exponential``: node ``i`` linked to ``(i + 2**k) % num_nodes`` for all ``2**k < num_nodes``.

    Degree about ``2 log2(n)`` and diameter about ``log2(n)``: the usual sparse
    graph with fast mixing in decentralized SGD.
    """
    pairs: list[tuple[int, int]] = []
    step = 1
    while step < num_nodes:
        pairs.extend((i, (i + step) % num_nodes) for i in range(num_nodes))
        step *= 2
    return _normalised_graph(num_nodes, pairs)


# ---------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GraphFamily:
    """One topology of the registry: how to check its parameters and build it.

    Attributes
    ----------
    build : callable
        ``build(num_nodes, **params) -> networkx.Graph`` on nodes
        ``0..num_nodes-1``; assumes parameters that ``check`` accepted.
    check : callable
        ``check(num_nodes, **params) -> None`` with ``params`` minus ``seed``;
        pure Python, raises :class:`TopologyError`.  Each value is already
        valid on its own (``num_nodes`` an integer >= 2, ``degree`` an integer,
        ``prob`` in ``[0, 1]``): it checks what the family asks of them together.
    params : tuple of str
        The keyword parameters of :func:`build_graph` the family reads, out of
        ``edges``, ``degree``, ``prob`` and ``seed``; only these are checked
        and passed on, so an unused key's value never causes an error.
    """

    build: Callable[..., nx.Graph]
    check: Callable[..., None] = _no_constraints
    params: tuple[str, ...] = ()


BUILDERS: dict[str, GraphFamily] = {
    "edges": GraphFamily(edge_list_graph, _check_edge_list, ("edges",)),
    "ring": GraphFamily(ring_graph, _check_ring),
    "star": GraphFamily(star_graph),
    "full": GraphFamily(complete_graph),
    "line": GraphFamily(path_graph),
    "torus": GraphFamily(torus_graph, _check_torus),
    "erdos-renyi": GraphFamily(erdos_renyi_graph, _check_erdos_renyi, ("prob", "seed")),
    "k-regular": GraphFamily(k_regular_graph, _check_k_regular, ("degree", "seed")),
    "small-world": GraphFamily(small_world_graph, _check_small_world, ("degree", "prob", "seed")),
    "exponential": GraphFamily(exponential_graph),
}
"""Topology name -> :class:`GraphFamily`; the run config's ``topology`` chooses one."""

TOPOLOGIES: tuple[str, ...] = tuple(BUILDERS)
"""Names accepted by :func:`check_topology` and :func:`build_graph`, in registry order."""


def check_topology(
    name: str,
    num_nodes: int,
    *,
    edges: str = STUDY_EDGES,
    degree: int = 4,
    prob: float = 0.5,
) -> None:
    """Check a topology name and the parameters it reads, without building it.

    Pure Python (no networkx import), so that a bad topology fails before any
    graph, data or model is made.  :func:`build_graph` runs exactly these
    checks: first each value the family reads on its own (its type and range),
    then :func:`check_family`.

    Parameters
    ----------
    name : str
        Run-config key ``topology``; one of :data:`TOPOLOGIES`.
    num_nodes : int
        Key ``num-nodes``: an integer >= 2 (>= 3 for ``ring`` and
        ``small-world``; ``r x c`` with ``r, c >= 3`` for ``torus``).
    edges : str, optional
        Key ``edges``, read by ``edges`` only: an edge list (see
        :func:`parse_edges`) whose graph on ``0..num_nodes-1`` is connected.
    degree : int, optional
        Key ``degree``, read by ``k-regular`` (``2 <= degree < num_nodes`` with
        ``num_nodes * degree`` even, or 1 on 2 nodes) and ``small-world``
        (even, ``2 <= degree < num_nodes``).
    prob : float, optional
        Key ``edge-prob``, read by ``erdos-renyi`` (in ``(0, 1]``) and
        ``small-world`` (in ``[0, 1]``).

    Raises
    ------
    TopologyError
        The message starts with the key, then the value, then what is
        allowed.  Random families can still fail in :func:`build_graph` when no
        connected sample turns up, which only sampling can tell.
    """
    _check_name(name)
    n = _check_num_nodes(num_nodes)
    params = BUILDERS[name].params
    if "degree" in params:
        _check_degree(degree)
    if "prob" in params:
        _check_prob(prob)
    check_family(name, n, edges=edges, degree=degree, prob=prob)


def check_family(name: str, num_nodes: int, *, edges: str, degree: int, prob: float) -> None:
    """What a topology asks of its parameters together, each value already valid on its own.

    The run config checks each key's type and range once (its schema, :mod:`flower_dl.config`) and then
    only this; :func:`check_topology` checks them itself first, for callers that did not.

    Parameters
    ----------
    name : str
        One of :data:`TOPOLOGIES`.
    num_nodes : int
        An integer >= 2.
    edges, degree, prob
        As for :func:`check_topology`; only those the family reads are looked at (``degree`` an
        integer, ``prob`` a number in ``[0, 1]``).

    Raises
    ------
    TopologyError
        Naming the key, the value and what this topology allows (``num-nodes: 7 cannot be laid out
        as a torus; ...``, a disconnected edge list, a degree a k-regular graph cannot have).
    """
    family = BUILDERS[name]
    given = {"edges": edges, "degree": degree, "prob": prob}
    family.check(num_nodes, **{key: given[key] for key in family.params if key in given})


def _check_name(name: object) -> None:
    if not isinstance(name, str) or name not in BUILDERS:
        raise TopologyError(f"topology: {name!r} is not a known topology; allowed: {', '.join(TOPOLOGIES)}")


def build_graph(
    name: str,
    num_nodes: int,
    *,
    edges: str = STUDY_EDGES,
    degree: int = 4,
    prob: float = 0.5,
    seed: int = 0,
) -> nx.Graph:
    """Build a communication topology: :func:`check_topology`, then the builder in :data:`BUILDERS`.

    Parameters
    ----------
    name : str
        One of :data:`TOPOLOGIES`; the graph is described on its builder
        (``edges``: :func:`edge_list_graph`, ``ring``: :func:`ring_graph`,
        ``full``: :func:`complete_graph`, ``line``: :func:`path_graph`, ...).
    num_nodes : int
        Number of nodes (``>= 2``); nodes are the ints ``0..num_nodes-1``.
    edges : str, optional
        Edge list for ``name == "edges"``; defaults to :data:`STUDY_EDGES`.
    degree : int, optional
        Degree for ``k-regular`` and ``small-world``.
    prob : float, optional
        Edge probability (``erdos-renyi``) or rewiring probability
        (``small-world``); configuration key ``edge-prob``.
    seed : int, optional
        Seed for the random topologies; the result is deterministic in it.

    Returns
    -------
    networkx.Graph
        Connected undirected simple graph on nodes ``0..num_nodes-1`` (inserted
        in order, edges sorted), so that node ids index mixing matrices.

    Raises
    ------
    TopologyError
        For an unknown ``name`` or invalid parameters (see
        :func:`check_topology`; ``seed`` must be an integer for the random
        families), or a random family that found no connected sample.
    """
    check_topology(name, num_nodes, edges=edges, degree=degree, prob=prob)
    family = BUILDERS[name]
    if "seed" in family.params:
        _check_seed(seed)
    given = {"edges": edges, "degree": degree, "prob": prob, "seed": seed}
    return family.build(int(num_nodes), **{key: given[key] for key in family.params})
