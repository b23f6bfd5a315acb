"""Communication topologies and gossip mixing matrices for decentralized learning.

This module sits at the bottom of the ``flower_dl`` layering: it imports nothing
from the rest of the package, and networkx only inside the functions that build
or inspect a graph.  Every ClientApp process imports this module to validate its
run config, and networkx would slow each one's start; so the parameter checks
(:func:`check_topology`, :func:`parse_edges`) are pure Python.

Registry
--------
:data:`BUILDERS` maps each topology name to a :class:`GraphFamily`: a small pure
builder named after the graph (``ring_graph``, ``torus_graph``,
``erdos_renyi_graph``, ...; see each one's docstring for the graph), the
function that checks its parameters, and the names of the parameters it reads
(``edges``, ``degree``, ``prob``, ``seed``).  :data:`TOPOLOGIES` is
``tuple(BUILDERS)``.  :func:`check_topology` checks a name and its parameters,
without building anything; :func:`build_graph` runs :func:`check_topology` and
then the builder, which may therefore assume valid parameters.

To add a graph family, write ``foo_graph(num_nodes, ...)`` returning
``_normalised_graph(num_nodes, edges)``, a ``_check_foo(num_nodes, ...)`` if
some parameter values are invalid for it, and one entry
``"foo": GraphFamily(foo_graph, _check_foo, ("degree",))`` in :data:`BUILDERS`;
the run config's allowed ``topology`` values follow from :data:`TOPOLOGIES`.

Also here: the original study's 5-node tree as an edge list
(:data:`STUDY_EDGES`), connectivity checks (:func:`check_connected`),
doubly-stochastic (Metropolis-Hastings) and row-stochastic (uniform) mixing
matrices (:func:`mixing_matrix`) with a validator
(:func:`validate_mixing_matrix`), and :func:`spectral_gap`, :func:`neighbours`
and :func:`describe`.

Every error caused by bad input is raised as :class:`TopologyError` (a
:class:`ValueError`) whose message starts with the offending configuration key
(``topology``, ``num-nodes``, ``edges``, ``degree``, ``edge-prob``, ``seed``,
``mixing``), then the offending value and what would be allowed.
"""

from __future__ import annotations

import heapq
import itertools
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

if TYPE_CHECKING:
    import networkx as nx

__all__ = [
    "BUILDERS",
    "MIXINGS",
    "STUDY_EDGES",
    "TOPOLOGIES",
    "GraphFamily",
    "TopologyError",
    "build_graph",
    "check_connected",
    "check_topology",
    "complete_graph",
    "describe",
    "edge_list_graph",
    "erdos_renyi_graph",
    "exponential_graph",
    "k_regular_graph",
    "mixing_matrix",
    "neighbours",
    "parse_edges",
    "path_graph",
    "ring_graph",
    "small_world_graph",
    "spectral_gap",
    "star_graph",
    "torus_graph",
    "validate_mixing_matrix",
]

MIXINGS: tuple[str, ...] = ("metropolis", "uniform")
"""Names accepted by :func:`mixing_matrix`."""

STUDY_EDGES = "0-1,0-2,0-3,2-4"
"""The original study's 5-node tree (node 0 has degree 3)."""

_MAX_TRIES = 1000
_EDGE_RE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")
_EDGE_EXAMPLE = "'0-1,0-2,2-4'"
_MAX_COMPONENTS_LISTED = 5  # more components: the first 4, then "and N more"
_MAX_NODES_LISTED = 8  # a larger component: its first 6 nodes, then its size
_MAX_SPEC_SHOWN = 60  # a longer edge list is quoted by its start and length


class TopologyError(ValueError):
    """Raised for every invalid topology, edge list or mixing matrix."""


# ---------------------------------------------------------------------------
# message helpers
# ---------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _join_and(parts: list[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _format_nodes(labels: list[str]) -> str:
    """``{a, b, c}`` from ordered labels; a large component shows its first few and its size."""
    if len(labels) > _MAX_NODES_LISTED:
        return "{" + ", ".join(labels[: _MAX_NODES_LISTED - 2]) + f", ... ({len(labels)} nodes)}}"
    return "{" + ", ".join(labels) + "}"


def _components_phrase(count: int, components: Iterable[list[str]]) -> str:
    """``"3 components {0, 1}, {2} and {3}"``, cut to a few components plus ``"and N more"``.

    ``components`` yields each component's ordered labels, components in display
    order; it is consumed only as far as the phrase needs, so it may be lazy.
    """
    shown = count if count <= _MAX_COMPONENTS_LISTED else _MAX_COMPONENTS_LISTED - 1
    parts = [_format_nodes(c) for c in itertools.islice(components, shown)]
    if shown == count:
        return f"{count} components {_join_and(parts)}"
    return f"{count} components {', '.join(parts)} and {count - shown} more"


def _quote_spec(spec: str) -> str:
    """``repr(spec)``, or its start and length for an edge list too long to quote in a message."""
    if len(spec) <= _MAX_SPEC_SHOWN:
        return repr(spec)
    return f"{spec[: _MAX_SPEC_SHOWN - 20] + '...'!r} ({len(spec)} characters)"


# ---------------------------------------------------------------------------
# edge lists
# ---------------------------------------------------------------------------


def parse_edges(spec: str, num_nodes: int) -> list[tuple[int, int]]:
    """Parse an edge-list string such as ``"0-1,0-2,2-4"``.

    Parameters
    ----------
    spec : str
        Comma-separated ``i-j`` pairs of non-negative integer node ids.
        Whitespace around items and around the ``-`` is tolerated.
    num_nodes : int
        Number of nodes; every id must lie in ``0..num_nodes-1``.

    Returns
    -------
    list of tuple of int
        The edges in order of first appearance, each as ``(min(i, j), max(i, j))``;
        duplicates (including ``"1-0"`` after ``"0-1"``) are removed.

    Raises
    ------
    TopologyError
        If ``spec`` is empty, an item is malformed, names a node out of range,
        or is a self-loop.  The message names the key ``edges`` and the item.
        Connectivity is not checked here (:func:`check_topology` does).

    Examples
    --------
    >>> parse_edges("0-1,0-2, 2-4", 5)
    [(0, 1), (0, 2), (2, 4)]
    """
    n = _check_num_nodes(num_nodes)
    if not isinstance(spec, str):
        raise TopologyError(
            f"edges: {spec!r} is not a string; expected comma-separated 'i-j' pairs (example: {_EDGE_EXAMPLE})"
        )
    if not spec.strip():
        raise TopologyError(f"edges: {spec!r} is empty; give at least one 'i-j' pair (example: {_EDGE_EXAMPLE})")
    result: list[tuple[int, int]] = []
    seen: set[tuple[int, int]] = set()
    for raw in spec.split(","):
        item = raw.strip()
        match = _EDGE_RE.match(item)
        if match is None:
            raise TopologyError(
                f"edges: {item!r} is not of the form 'i-j' with integer node ids (example: {_EDGE_EXAMPLE})"
            )
        i, j = int(match.group(1)), int(match.group(2))
        for node in (i, j):
            if node >= n:
                raise TopologyError(
                    f"edges: {item!r} names node {node}, but num-nodes is {n} (allowed node ids: 0..{n - 1})"
                )
        if i == j:
            raise TopologyError(f"edges: {item!r} is a self-loop; an edge must join two different nodes")
        edge = (min(i, j), max(i, j))
        if edge not in seen:
            seen.add(edge)
            result.append(edge)
    return result


def _edge_groups(edges: Iterable[tuple[int, int]]) -> dict[int, list[int]]:
    """Connected components of the nodes named by ``edges``, by union-find.

    Returns
    -------
    dict
        Each component's smallest node -> the component's nodes; nodes no edge
        names are absent (each is a component of its own).
    """
    parent: dict[int, int] = {}

    def find(v: int) -> int:
        root = v
        while parent.setdefault(root, root) != root:
            root = parent[root]
        while parent[v] != root:  # path compression
            parent[v], v = root, parent[v]
        return root

    for u, v in edges:
        ru, rv = find(u), find(v)
        if ru != rv:
            parent[max(ru, rv)] = min(ru, rv)  # a root stays its component's smallest node
    groups: dict[int, list[int]] = {}
    for v in parent:
        groups.setdefault(find(v), []).append(v)
    return groups


# ---------------------------------------------------------------------------
# parameter checks (pure Python: no networkx)
# ---------------------------------------------------------------------------


def _check_num_nodes(num_nodes: object, minimum: int = 2) -> int:
    if not _is_int(num_nodes):
        raise TopologyError(f"num-nodes: {num_nodes!r} is not an integer; allowed: an integer >= {minimum}")
    n = int(num_nodes)  # type: ignore[arg-type]
    if n < minimum:
        raise TopologyError(f"num-nodes: {n} is too small; allowed: an integer >= {minimum}")
    return n


def _check_degree(degree: object) -> int:
    if not _is_int(degree):
        raise TopologyError(f"degree: {degree!r} is not an integer; allowed: an integer >= 1")
    return int(degree)  # type: ignore[arg-type]


def _check_prob(prob: object) -> float:
    if isinstance(prob, (bool, np.bool_)) or not isinstance(prob, (int, float, np.number)):
        raise TopologyError(f"edge-prob: {prob!r} is not a number; allowed: a float in [0, 1]")
    p = float(prob)  # type: ignore[arg-type]
    if not (0.0 <= p <= 1.0):
        raise TopologyError(f"edge-prob: {prob!r} is out of range; allowed: a float in [0, 1]")
    return p


def _check_seed(seed: object) -> int:
    if not _is_int(seed):
        raise TopologyError(f"seed: {seed!r} is not an integer; allowed: an integer")
    return int(seed)  # type: ignore[arg-type]


def _no_constraints(num_nodes: int) -> None:
    """Check of a family that takes every ``num-nodes >= 2`` and no other parameter."""


def _check_edge_list(num_nodes: int, edges: str) -> None:
    """Parse ``edges`` and require the graph on ``0..num_nodes-1`` to be connected.

    A disconnected graph is reported by its components (a few, then how many
    more).  When the edge list leaves out many top node ids (typically the
    study's 5-node tree with a larger ``num-nodes``) the message says that in
    one line instead: a list of thousands of isolated nodes would hide it.
    """
    n = num_nodes
    groups = _edge_groups(parse_edges(edges, n))
    named = {v for component in groups.values() for v in component}
    count = len(groups) + n - len(named)
    if count == 1:
        return
    top = max(named)
    if count > _MAX_COMPONENTS_LISTED and top < n - 1:
        covered = f"names only nodes 0..{top}" if len(named) == top + 1 else f"names no node above {top}"
        missing = f"node {top + 1} has" if top + 1 == n - 1 else f"nodes {top + 1}..{n - 1} have"
        raise TopologyError(
            f"edges: {_quote_spec(edges)} {covered}, but num-nodes is {n}: {missing} no edge, so the graph is "
            f"disconnected; give edges over all nodes 0..{n - 1} or choose another topology (ring, star, ...)"
        )
    components = heapq.merge(  # by smallest node; the isolated nodes are generated only as far as listed
        (sorted(groups[root]) for root in sorted(groups)),
        ([v] for v in range(n) if v not in named),
        key=lambda component: component[0],
    )
    phrase = _components_phrase(count, ([str(v) for v in c] for c in components))
    raise TopologyError(
        f"edges: {_quote_spec(edges)} gives a disconnected graph: {phrase}; "
        f"decentralized learning needs a connected graph"
    )


def _check_ring(num_nodes: int) -> None:
    if num_nodes < 3:
        raise TopologyError(
            f"num-nodes: {num_nodes} is too small for a ring; allowed: an integer >= 3 "
            f"(a ring on 2 nodes would repeat its one edge; use line or full)"
        )


def _torus_shape(n: int) -> tuple[int, int] | None:
    """Most square ``(r, c)`` with ``r <= c``, ``r * c == n`` and ``r, c >= 3``."""
    for r in range(math.isqrt(n), 2, -1):
        if n % r == 0 and n // r >= 3:
            return r, n // r
    return None


def _check_torus(num_nodes: int) -> None:
    n = num_nodes
    if _torus_shape(n) is not None:
        return
    sizes = [m for m in range(9, 25) if _torus_shape(m) is not None]
    hint = ", ".join(map(str, sizes)) + ", ..."
    if n > sizes[-1]:  # the two nearest sizes that work say more than the smallest ones
        below = next(m for m in range(n - 1, 8, -1) if _torus_shape(m) is not None)
        above = next(m for m in itertools.count(n + 1) if _torus_shape(m) is not None)
        hint += f"; nearest: {below} and {above}"
    raise TopologyError(
        f"num-nodes: {n} cannot be laid out as a torus; allowed: num-nodes = r x c with r, c >= 3 "
        f"(sizes that work: {hint})"
    )


def _check_erdos_renyi(num_nodes: int, prob: object) -> None:
    n = num_nodes
    if _check_prob(prob) == 0.0:
        raise TopologyError(
            f"edge-prob: {prob!r} gives a graph without edges, never connected; allowed: 0 < edge-prob <= 1 "
            f"(about ln(n)/n = {math.log(n) / n:.3g} or more on {n} nodes)"
        )


def _check_k_regular(num_nodes: int, degree: object) -> None:
    n, d = num_nodes, _check_degree(degree)
    if n == 2:
        allowed, valid = "degree 1", d == 1
    else:
        allowed = f"{'an even' if n % 2 else 'a'} degree with 2 <= degree < num-nodes ({n})"
        valid = 2 <= d < n and (n * d) % 2 == 0
    if valid:
        return
    if d >= n:
        why = "a node cannot link to more than num-nodes - 1 others"
    elif d < 1:
        why = "every node needs a neighbour"
    elif d == 1:
        why = "degree 1 pairs the nodes off, which is never connected on more than 2 nodes"
    else:
        why = f"num-nodes x degree = {n * d} is odd, but it is twice the number of edges"
    raise TopologyError(f"degree: {d} is invalid for a k-regular graph on {n} nodes; allowed: {allowed} ({why})")


def _check_small_world(num_nodes: int, degree: object, prob: object) -> None:
    n = num_nodes
    if n < 3:
        raise TopologyError(f"num-nodes: {n} is too small for a small-world graph; allowed: an integer >= 3")
    d = _check_degree(degree)
    if d < 2 or d >= n or d % 2:
        raise TopologyError(
            f"degree: {d} is invalid for a small-world graph on {n} nodes; allowed: an "
            f"even degree with 2 <= degree < num-nodes ({n}) (degree/2 neighbours per side)"
        )
    _check_prob(prob)


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
        pure Python, raises :class:`TopologyError`.  ``num_nodes`` is already
        an integer >= 2.
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

    Pure Python (no networkx import), so that every process can check its run
    config cheaply, and so that a bad config fails before any graph, data or
    model is made.  :func:`build_graph` runs exactly these checks.

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
    if not isinstance(name, str) or name not in BUILDERS:
        raise TopologyError(f"topology: {name!r} is not a known topology; allowed: {', '.join(TOPOLOGIES)}")
    n = _check_num_nodes(num_nodes)
    family = BUILDERS[name]
    given = {"edges": edges, "degree": degree, "prob": prob}
    family.check(n, **{key: given[key] for key in family.params if key in given})


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


# ---------------------------------------------------------------------------
# connectivity
# ---------------------------------------------------------------------------


def _node_count(graph: nx.Graph) -> int:
    """Check that ``graph`` is undirected, loop-free, on nodes ``0..n-1``; return ``n``."""
    import networkx as nx

    if not isinstance(graph, nx.Graph):
        raise TopologyError(f"graph: expected a networkx.Graph, got {type(graph).__name__}")
    if graph.is_directed():
        raise TopologyError("graph: must be undirected; got a directed graph")
    if graph.is_multigraph():
        raise TopologyError("graph: must be a simple graph; got a multigraph")
    n = graph.number_of_nodes()
    if set(graph.nodes) != set(range(n)):
        bad = sorted((v for v in graph.nodes if v not in set(range(n))), key=repr)
        raise TopologyError(
            f"graph: node ids must be exactly 0..{n - 1}; found unexpected node(s) "
            f"{', '.join(repr(v) for v in bad[:5])}"
        )
    loops = sorted(v for v, _ in nx.selfloop_edges(graph))
    if loops:
        raise TopologyError(f"graph: node {loops[0]} has a self-loop; an edge must join two different nodes")
    return n


def check_connected(graph: nx.Graph) -> None:
    """Raise if ``graph`` is not connected.

    Parameters
    ----------
    graph : networkx.Graph
        Undirected graph.

    Raises
    ------
    TopologyError
        If the graph is empty or disconnected; the message lists the
        components (a few, then how many more), e.g. ``"topology is
        disconnected: 2 components {0, 1, 2} and {3, 4}; decentralized learning
        needs a connected graph"``.
    """
    import networkx as nx

    if graph.number_of_nodes() == 0:
        raise TopologyError("topology has no nodes; decentralized learning needs a connected graph")
    components = list(nx.connected_components(graph))
    if len(components) > 1:
        try:
            labels = [[str(v) for v in sorted(c)] for c in sorted(components, key=min)]
        except TypeError:  # non-comparable node labels
            labels = sorted(sorted(repr(v) for v in c) for c in components)
        raise TopologyError(
            f"topology is disconnected: {_components_phrase(len(components), labels)}; "
            f"decentralized learning needs a connected graph"
        )


# ---------------------------------------------------------------------------
# mixing matrices
# ---------------------------------------------------------------------------


def mixing_matrix(graph: nx.Graph, kind: str = "metropolis") -> np.ndarray:
    """Gossip mixing matrix of ``graph``.

    Parameters
    ----------
    graph : networkx.Graph
        Connected undirected simple graph on nodes ``0..n-1``.
    kind : str, optional
        ``"metropolis"`` (Metropolis-Hastings, symmetric and doubly
        stochastic): ``W_ij = 1 / (1 + max(deg_i, deg_j))`` on edges,
        ``W_ii = 1 - sum_{j != i} W_ij``.
        ``"uniform"``: ``W_ij = 1 / (deg_i + 1)`` for ``j`` in the closed
        neighbourhood of ``i`` (row stochastic; symmetric only on regular graphs).

    Returns
    -------
    numpy.ndarray
        ``float64`` array of shape ``(n, n)`` indexed by node id.

    Raises
    ------
    TopologyError
        For an unknown ``kind`` (key ``mixing``), a malformed or disconnected
        graph, or if the result fails :func:`validate_mixing_matrix`.
    """
    import networkx as nx

    if not isinstance(kind, str) or kind not in MIXINGS:
        raise TopologyError(f"mixing: {kind!r} is not a known mixing; allowed: {', '.join(MIXINGS)}")
    n = _node_count(graph)
    check_connected(graph)
    deg = np.array([graph.degree(i) for i in range(n)], dtype=np.float64)
    W = np.zeros((n, n), dtype=np.float64)
    if kind == "metropolis":
        for u, v in graph.edges:
            w = 1.0 / (1.0 + max(deg[u], deg[v]))
            W[u, v] = w
            W[v, u] = w
        np.fill_diagonal(W, 1.0 - W.sum(axis=1))
        symmetric = True
    else:
        for i in range(n):
            w = 1.0 / (deg[i] + 1.0)
            W[i, i] = w
            for j in graph.neighbors(i):
                W[i, j] = w
        symmetric = bool(nx.is_regular(graph))
    validate_mixing_matrix(W, graph, symmetric=symmetric)
    return W


def validate_mixing_matrix(
    W: ArrayLike,
    graph: nx.Graph | None = None,
    *,
    symmetric: bool | None = None,
    atol: float = 1e-9,
) -> None:
    """Check that ``W`` is a valid gossip mixing matrix.

    Parameters
    ----------
    W : array_like
        Candidate ``(n, n)`` matrix.
    graph : networkx.Graph, optional
        If given, ``W`` must have one row per node, put weight (``> atol``)
        only on edges and the diagonal, and the graph must be connected.
    symmetric : bool, optional
        If true, additionally require ``W == W.T`` and columns summing to 1
        (doubly stochastic).  ``None`` (default) and ``False`` do not require
        it; :func:`mixing_matrix` passes ``True`` for Metropolis and, for
        uniform weights, on regular graphs.
    atol : float, optional
        Absolute tolerance for the sum and symmetry checks.

    Raises
    ------
    TopologyError
        Naming the failing property and the row/entry concerned.
    """
    try:
        A = np.asarray(W, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TopologyError(f"mixing matrix: cannot be read as a float array ({exc})") from exc
    if A.ndim != 2 or A.shape[0] != A.shape[1] or A.shape[0] == 0:
        raise TopologyError(f"mixing matrix must be square and non-empty (n x n); got shape {A.shape}")
    bad = np.argwhere(~np.isfinite(A))
    if bad.size:
        i, j = (int(x) for x in bad[0])
        raise TopologyError(f"mixing matrix has a non-finite entry W[{i}, {j}] = {A[i, j]}")
    bad = np.argwhere(-atol > A)
    if bad.size:
        i, j = (int(x) for x in bad[0])
        raise TopologyError(f"mixing matrix has a negative entry W[{i}, {j}] = {A[i, j]:.6g}; all weights must be >= 0")
    rows = A.sum(axis=1)
    bad_rows = np.flatnonzero(np.abs(rows - 1.0) > atol)
    if bad_rows.size:
        i = int(bad_rows[0])
        raise TopologyError(
            f"row {i} of the mixing matrix sums to {rows[i]:.12g}; every row must sum to 1 (atol={atol:g})"
        )
    if symmetric:
        _check_doubly_stochastic(A, atol)
    if graph is not None:
        _check_support(A, graph, atol)


def _check_doubly_stochastic(A: np.ndarray, atol: float) -> None:
    """Require ``A == A.T`` and columns summing to 1 (rows are already checked)."""
    diff = np.abs(A - A.T)
    if diff.max() > atol:
        i, j = (int(x) for x in np.unravel_index(int(np.argmax(diff)), diff.shape))
        raise TopologyError(
            f"mixing matrix is not symmetric: W[{i}, {j}] = {A[i, j]:.6g} but "
            f"W[{j}, {i}] = {A[j, i]:.6g} (symmetric weights are required)"
        )
    cols = A.sum(axis=0)
    bad_cols = np.flatnonzero(np.abs(cols - 1.0) > atol)
    if bad_cols.size:  # pragma: no cover - implied by symmetric rows
        j = int(bad_cols[0])
        raise TopologyError(
            f"column {j} of the mixing matrix sums to {cols[j]:.12g}; every column must sum to 1 (atol={atol:g})"
        )


def _check_support(A: np.ndarray, graph: nx.Graph, atol: float) -> None:
    """Require one row per node of a connected ``graph`` and weight only on its edges and the diagonal."""
    import networkx as nx

    n = A.shape[0]
    m = _node_count(graph)
    if m != n:
        raise TopologyError(f"mixing matrix has shape {A.shape} but the graph has {m} nodes")
    allowed = nx.to_numpy_array(graph, nodelist=range(n), weight=None) > 0
    np.fill_diagonal(allowed, True)
    bad = np.argwhere((atol < A) & ~allowed)
    if bad.size:
        i, j = (int(x) for x in bad[0])
        raise TopologyError(
            f"mixing matrix puts weight W[{i}, {j}] = {A[i, j]:.6g} on the pair ({i}, {j}), "
            f"which is not an edge of the graph; weights are allowed only on edges and "
            f"the diagonal"
        )
    check_connected(graph)


# ---------------------------------------------------------------------------
# summaries
# ---------------------------------------------------------------------------


def spectral_gap(W: ArrayLike) -> float:
    """Spectral gap ``1 - max(|lambda_2|, |lambda_n|)`` of a mixing matrix.

    Parameters
    ----------
    W : array_like
        Square (row-)stochastic matrix.  Symmetric input uses
        :func:`numpy.linalg.eigvalsh`; otherwise the moduli of
        :func:`numpy.linalg.eigvals` are used.

    Returns
    -------
    float
        One minus the second largest eigenvalue modulus (``1.0`` for ``n == 1``).
    """
    A = np.asarray(W, dtype=np.float64)
    if A.ndim != 2 or A.shape[0] != A.shape[1] or A.shape[0] == 0:
        raise TopologyError(f"mixing matrix must be square and non-empty (n x n); got shape {A.shape}")
    if A.shape[0] == 1:
        return 1.0
    if np.allclose(A, A.T, rtol=0.0, atol=1e-12):
        moduli = np.abs(np.linalg.eigvalsh(A))
    else:
        moduli = np.abs(np.linalg.eigvals(A))
    moduli = np.sort(moduli)[::-1]
    return float(1.0 - moduli[1])


def neighbours(graph: nx.Graph, node: int) -> list[int]:
    """Sorted neighbours of ``node`` in ``graph``.

    Parameters
    ----------
    graph : networkx.Graph
        Undirected graph.
    node : int
        Node id.

    Returns
    -------
    list of int
        Neighbour ids in increasing order (``node`` itself excluded).

    Raises
    ------
    TopologyError
        If ``node`` is not in the graph.
    """
    if node not in graph:
        n = graph.number_of_nodes()
        raise TopologyError(f"node: {node!r} is not in the graph (allowed node ids: 0..{n - 1})")
    return sorted(int(v) for v in graph.neighbors(node) if v != node)


def describe(graph: nx.Graph, W: ArrayLike) -> dict[str, int | float | bool]:
    """Summary statistics of a topology and its mixing matrix.

    Parameters
    ----------
    graph : networkx.Graph
        The topology.
    W : array_like
        Its mixing matrix.

    Returns
    -------
    dict
        Keys ``"num-nodes"``, ``"num-edges"``, ``"min-degree"``,
        ``"max-degree"`` (ints), ``"spectral-gap"`` (float) and
        ``"regular"`` (bool).
    """
    degrees = [int(d) for _, d in graph.degree()]
    return {
        "num-nodes": int(graph.number_of_nodes()),
        "num-edges": int(graph.number_of_edges()),
        "min-degree": min(degrees) if degrees else 0,
        "max-degree": max(degrees) if degrees else 0,
        "spectral-gap": spectral_gap(W),
        "regular": bool(degrees) and len(set(degrees)) == 1,
    }
