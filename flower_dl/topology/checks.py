"""Parameter checks and edge lists of :mod:`flower_dl.topology`: pure Python, no networkx.

Every ClientApp process checks its run config through :func:`check_topology`,
which runs the checks here; networkx would slow each process's start, so this
module (and everything it imports) stays free of it.  Here: :class:`TopologyError`,
the study's edge list :data:`STUDY_EDGES`, :func:`parse_edges`, one
``_check_<family>`` per graph family that has invalid parameter values, and the
helpers that phrase a disconnected graph in a message. The mixing schedules'
checks are in :mod:`flower_dl.topology.schedule_checks`.
"""

from __future__ import annotations

import heapq
import itertools
import math
import re
from collections.abc import Iterable
from typing import TypeGuard

import numpy as np

STUDY_EDGES = "0-1,0-2,0-3,2-4"
"""The original study's 5-node tree (node 0 has degree 3)."""

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


def _is_int(value: object) -> TypeGuard[int | np.integer]:
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
    return _parse_edges(spec, _check_num_nodes(num_nodes))


def _parse_edges(spec: object, n: int) -> list[tuple[int, int]]:
    """:func:`parse_edges` for a ``num_nodes`` already known to be an integer >= 2."""
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
    n = int(num_nodes)
    if n < minimum:
        raise TopologyError(f"num-nodes: {n} is too small; allowed: an integer >= {minimum}")
    return n


def _check_degree(degree: object) -> int:
    if not _is_int(degree):
        raise TopologyError(f"degree: {degree!r} is not an integer; allowed: an integer >= 1")
    return int(degree)


def _check_prob(prob: object) -> float:
    if isinstance(prob, (bool, np.bool_)) or not isinstance(prob, (int, float, np.number)):
        raise TopologyError(f"edge-prob: {prob!r} is not a number; allowed: a float in [0, 1]")
    p = float(prob)
    if not (0.0 <= p <= 1.0):
        raise TopologyError(f"edge-prob: {prob!r} is out of range; allowed: a float in [0, 1]")
    return p


def _check_seed(seed: object) -> int:
    if not _is_int(seed):
        raise TopologyError(f"seed: {seed!r} is not an integer; allowed: an integer")
    return int(seed)


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
    groups = _edge_groups(_parse_edges(edges, n))
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


def _check_erdos_renyi(num_nodes: int, prob: float) -> None:
    n = num_nodes
    if float(prob) == 0.0:
        raise TopologyError(
            f"edge-prob: {prob!r} gives a graph without edges, never connected; allowed: 0 < edge-prob <= 1 "
            f"(about ln(n)/n = {math.log(n) / n:.3g} or more on {n} nodes)"
        )


def _check_k_regular(num_nodes: int, degree: int) -> None:
    n, d = num_nodes, int(degree)
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


def _check_small_world(num_nodes: int, degree: int, prob: float) -> None:  # prob: any value in [0, 1]
    n = num_nodes
    if n < 3:
        raise TopologyError(f"num-nodes: {n} is too small for a small-world graph; allowed: an integer >= 3")
    d = int(degree)
    if d < 2 or d >= n or d % 2:
        raise TopologyError(
            f"degree: {d} is invalid for a small-world graph on {n} nodes; allowed: an "
            f"even degree with 2 <= degree < num-nodes ({n}) (degree/2 neighbours per side)"
        )
