"""Connectivity, gossip mixing matrices and their summaries for :mod:`flower_dl.topology`.

:func:`mixing_matrix` builds a Metropolis-Hastings (doubly stochastic) or
uniform (row-stochastic) matrix from a graph, :func:`validate_mixing_matrix`
checks any candidate matrix against a graph, and :func:`spectral_gap`,
:func:`neighbours` and :func:`describe` summarise a topology.  networkx is
imported only inside the functions that inspect a graph.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from flower_dl.topology.checks import TopologyError, _components_phrase

if TYPE_CHECKING:
    import networkx as nx

MIXINGS: tuple[str, ...] = ("metropolis", "uniform")
"""Names accepted by :func:`mixing_matrix`."""


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
