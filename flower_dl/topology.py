"""Communication topologies and gossip mixing matrices for decentralized learning.

This module sits at the bottom of the ``flower_dl`` layering: it imports nothing
from the rest of the package, and networkx only inside the functions that need
it (every ClientApp process validates its run config against this module's
names, and networkx would add ~0.1 s to each one's start).  It provides

* graph builders for the supported topologies (:func:`build_graph`), including
  the original study's 5-node tree given as an edge list (:data:`STUDY_EDGES`);
* connectivity checks (:func:`check_connected`);
* doubly-stochastic (Metropolis-Hastings) and row-stochastic (uniform) mixing
  matrices (:func:`mixing_matrix`) together with a validator
  (:func:`validate_mixing_matrix`);
* small helpers: :func:`spectral_gap`, :func:`neighbours` and :func:`describe`.

Every error caused by bad input is raised as :class:`TopologyError` (a
:class:`ValueError`) whose message names the offending configuration key
(``num-nodes``, ``edges``, ``degree``, ``edge-prob``, ``seed``, ``topology``,
``mixing``), the offending value and what would be allowed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

if TYPE_CHECKING:
    import networkx as nx

__all__ = [
    "MIXINGS",
    "STUDY_EDGES",
    "TOPOLOGIES",
    "TopologyError",
    "build_graph",
    "check_connected",
    "describe",
    "mixing_matrix",
    "neighbours",
    "parse_edges",
    "spectral_gap",
    "validate_mixing_matrix",
]

TOPOLOGIES: tuple[str, ...] = (
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
"""Names accepted by :func:`build_graph`."""

MIXINGS: tuple[str, ...] = ("metropolis", "uniform")
"""Names accepted by :func:`mixing_matrix`."""

STUDY_EDGES = "0-1,0-2,0-3,2-4"
"""The original study's 5-node tree (node 0 has degree 3)."""

_MAX_TRIES = 1000
_EDGE_RE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")
_EDGE_EXAMPLE = "'0-1,0-2,2-4'"


class TopologyError(ValueError):
    """Raised for every invalid topology, edge list or mixing matrix."""


# ---------------------------------------------------------------------------
# small validation helpers
# ---------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _check_num_nodes(num_nodes: object, minimum: int = 2) -> int:
    if not _is_int(num_nodes):
        raise TopologyError(f"num-nodes: {num_nodes!r} is not an integer; allowed: an integer >= {minimum}")
    n = int(num_nodes)  # type: ignore[arg-type]
    if n < minimum:
        raise TopologyError(f"num-nodes: {n} is too small; allowed: an integer >= {minimum}")
    return n


def _format_set(nodes: Iterable[int]) -> str:
    return "{" + ", ".join(str(v) for v in sorted(nodes)) + "}"


def _join_and(parts: list[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _normalised_graph(num_nodes: int, edges: Iterable[tuple[int, int]]) -> nx.Graph:
    """Return a fresh undirected graph on nodes ``0..num_nodes-1`` with sorted edges."""
    import networkx as nx

    clean = sorted({(min(int(u), int(v)), max(int(u), int(v))) for u, v in edges if u != v})
    graph = nx.Graph()
    graph.add_nodes_from(range(num_nodes))
    graph.add_edges_from(clean)
    return graph


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


# ---------------------------------------------------------------------------
# graph builders
# ---------------------------------------------------------------------------


def _torus_sizes(count: int = 8) -> list[int]:
    sizes: list[int] = []
    m = 9
    while len(sizes) < count:
        if _torus_shape(m) is not None:
            sizes.append(m)
        m += 1
    return sizes


def _torus_shape(n: int) -> tuple[int, int] | None:
    """Most square ``(r, c)`` with ``r <= c``, ``r * c == n`` and ``r, c >= 3``."""
    for r in range(math.isqrt(n), 2, -1):
        if n % r == 0 and n // r >= 3:
            return r, n // r
    return None


def _check_degree(degree: object) -> int:
    if not _is_int(degree):
        raise TopologyError(f"degree: {degree!r} is not an integer")
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
        raise TopologyError(f"seed: {seed!r} is not an integer")
    return int(seed)  # type: ignore[arg-type]


def build_graph(
    name: str,
    num_nodes: int,
    *,
    edges: str = STUDY_EDGES,
    degree: int = 4,
    prob: float = 0.5,
    seed: int = 0,
) -> nx.Graph:
    """Build a communication topology.

    Parameters
    ----------
    name : str
        One of :data:`TOPOLOGIES`:

        ``edges``
            the graph given by ``edges`` (see :func:`parse_edges`); all
            ``num_nodes`` nodes are present even if isolated (connectivity is
            *not* checked here; :func:`check_connected` reports it).
        ``ring``
            :func:`networkx.cycle_graph` (``num_nodes >= 3``).
        ``star``
            :func:`networkx.star_graph` with hub 0.
        ``full``
            :func:`networkx.complete_graph`.
        ``line``
            :func:`networkx.path_graph`.
        ``torus``
            periodic ``r x c`` grid, ``r * c == num_nodes``, ``3 <= r <= c`` as
            square as possible; node ``(i, j)`` becomes ``i * c + j``.
        ``erdos-renyi``
            :func:`networkx.erdos_renyi_graph` with edge probability ``prob``,
            resampled with seeds ``seed, seed + 1, ...`` until connected
            (at most 1000 tries).
        ``k-regular``
            :func:`networkx.random_regular_graph` of degree ``degree``,
            resampled until connected (at most 1000 tries).
        ``small-world``
            :func:`networkx.connected_watts_strogatz_graph` with ``degree``
            nearest neighbours (must be even) and rewiring probability ``prob``.
        ``exponential``
            node ``i`` linked to ``(i + 2**k) % num_nodes`` for all
            ``2**k < num_nodes``.
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
        Undirected simple graph on nodes ``0..num_nodes-1`` (inserted in order).

    Raises
    ------
    TopologyError
        For an unknown ``name`` or invalid parameters.
    """
    import networkx as nx

    if not isinstance(name, str) or name not in TOPOLOGIES:
        raise TopologyError(f"topology: {name!r} is not a known topology; allowed: {', '.join(TOPOLOGIES)}")
    n = _check_num_nodes(num_nodes)

    if name == "edges":
        return _normalised_graph(n, parse_edges(edges, n))
    if name == "ring":
        if n < 3:
            raise TopologyError(f"num-nodes: {n} is too small for a ring; allowed: >= 3")
        return _normalised_graph(n, nx.cycle_graph(n).edges)
    if name == "star":
        return _normalised_graph(n, nx.star_graph(n - 1).edges)
    if name == "full":
        return _normalised_graph(n, nx.complete_graph(n).edges)
    if name == "line":
        return _normalised_graph(n, nx.path_graph(n).edges)
    if name == "torus":
        shape = _torus_shape(n)
        if shape is None:
            sizes = ", ".join(str(s) for s in _torus_sizes())
            raise TopologyError(
                f"num-nodes: {n} cannot be laid out as a torus; it needs num-nodes = r x c "
                f"with r, c >= 3 (sizes that work: {sizes}, ...)"
            )
        r, c = shape
        grid = nx.grid_2d_graph(r, c, periodic=True)
        grid = nx.relabel_nodes(grid, {(i, j): i * c + j for i, j in grid.nodes})
        return _normalised_graph(n, grid.edges)
    if name == "erdos-renyi":
        p = _check_prob(prob)
        s = _check_seed(seed)
        for attempt in range(_MAX_TRIES):
            g = nx.erdos_renyi_graph(n, p, seed=s + attempt)
            if nx.is_connected(g):
                return _normalised_graph(n, g.edges)
        raise TopologyError(
            f"edge-prob: {prob!r} gave no connected Erdos-Renyi graph on {n} nodes in "
            f"{_MAX_TRIES} tries (seeds {s}..{s + _MAX_TRIES - 1}); use a larger edge-prob "
            f"(about ln(n)/n = {math.log(n) / n:.3g} or more)"
        )
    if name == "k-regular":
        d = _check_degree(degree)
        if not (1 <= d < n):
            raise TopologyError(
                f"degree: {d} is invalid for a k-regular graph on {n} nodes; allowed: 1 <= degree < num-nodes ({n})"
            )
        if (n * d) % 2:
            raise TopologyError(
                f"degree: {d} is invalid for a k-regular graph on {n} nodes; num-nodes x degree must be even"
            )
        if d == 1 and n > 2:
            raise TopologyError(
                f"degree: 1 can never give a connected k-regular graph on {n} nodes; allowed: 2 <= degree < num-nodes"
            )
        s = _check_seed(seed)
        for attempt in range(_MAX_TRIES):
            g = nx.random_regular_graph(d, n, seed=s + attempt)
            if nx.is_connected(g):
                return _normalised_graph(n, g.edges)
        raise TopologyError(  # pragma: no cover - practically unreachable
            f"degree: {d} gave no connected k-regular graph on {n} nodes in {_MAX_TRIES} tries"
        )
    if name == "small-world":
        d = _check_degree(degree)
        if d < 2 or d >= n or d % 2:
            raise TopologyError(
                f"degree: {d} is invalid for a small-world graph on {n} nodes; allowed: an "
                f"even degree with 2 <= degree < num-nodes ({n}) (degree/2 neighbours per side)"
            )
        p = _check_prob(prob)
        s = _check_seed(seed)
        try:
            g = nx.connected_watts_strogatz_graph(n, d, p, tries=_MAX_TRIES, seed=s)
        except nx.NetworkXError as exc:  # pragma: no cover - practically unreachable
            raise TopologyError(
                f"edge-prob: {prob!r} gave no connected small-world graph in {_MAX_TRIES} tries ({exc})"
            ) from exc
        return _normalised_graph(n, g.edges)
    # exponential
    pairs: list[tuple[int, int]] = []
    step = 1
    while step < n:
        pairs.extend((i, (i + step) % n) for i in range(n))
        step *= 2
    return _normalised_graph(n, pairs)


# ---------------------------------------------------------------------------
# connectivity
# ---------------------------------------------------------------------------


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
        components, e.g. ``"topology is disconnected: 2 components {0, 1, 2}
        and {3, 4}; decentralized learning needs a connected graph"``.
    """
    import networkx as nx

    if graph.number_of_nodes() == 0:
        raise TopologyError("topology has no nodes; decentralized learning needs a connected graph")
    components = list(nx.connected_components(graph))
    if len(components) > 1:
        try:
            components.sort(key=min)
            parts = [_format_set(c) for c in components]
        except TypeError:  # non-comparable node labels
            parts = ["{" + ", ".join(sorted(repr(v) for v in c)) + "}" for c in components]
            parts.sort()
        raise TopologyError(
            f"topology is disconnected: {len(components)} components {_join_and(parts)}; "
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
    import networkx as nx

    try:
        A = np.asarray(W, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TopologyError(f"mixing matrix: cannot be read as a float array ({exc})") from exc
    if A.ndim != 2 or A.shape[0] != A.shape[1] or A.shape[0] == 0:
        raise TopologyError(f"mixing matrix must be square and non-empty (n x n); got shape {A.shape}")
    n = A.shape[0]
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
    if graph is not None:
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
