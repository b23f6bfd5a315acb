"""Mixing schedules: the gossip matrix ``W(t)`` of each round, chosen by the run-config key ``mixing-schedule`` (numpy and scipy only).

A schedule is a pure function of ``(schedule, seed, round, step, graph)``:
:func:`mixing_at` draws nothing from shared state, so the ``W(t)`` of any
round can be re-derived afterwards (for a plot, a check or a resumed run).
Row ``i`` of ``W(t)`` is what receiver ``i`` averages: ``x_i <- sum_j W_ij
x_j``, so ``W_ij > 0`` for ``j != i`` means node ``j`` sent its model to node
``i`` that round (:func:`round_edges`).

``static``
    The topology's own ``W`` every round (D-PSGD).
``random-matching``
    Each round a random maximal matching of the topology's edges: matched
    pairs average ``1/2``-``1/2``, unmatched nodes keep their model. Symmetric,
    doubly stochastic, one model sent per matched node.
``one-peer-exponential``
    Ying et al., NeurIPS 2021, "Exponential Graph is Provably Efficient for
    Decentralized Deep Training": at gossip step ``t`` (0-based) node ``i``
    averages ``1/2``-``1/2`` with node ``(i + 2^k) mod n``, ``k = t mod tau``,
    ``tau = ceil(log2 n)``. A permutation plus the identity, halved: doubly
    stochastic. For ``n`` a power of 2 the product of any ``tau`` consecutive
    steps is exactly the average ``(1/n) 1 1^T``. It ignores the topology
    (its union over ``tau`` steps is the directed exponential graph).
``epidemic``
    EL-Local of Epidemic Learning (de Vos et al., NeurIPS 2023, "Epidemic
    Learning: Boosting Decentralized Learning with Randomized Communication";
    decentralizepy ``node/EpidemicLearning/EL_Local.py`` with
    ``sharing/PlainAverageSharing.py``): each node sends its model to
    ``epidemic-peers`` others drawn uniformly without replacement among *all*
    other nodes (the topology is ignored), and each node averages its own
    model with the ``r_i`` it received, ``W_ii = W_ij = 1 / (1 + r_i)``.
    Row stochastic only: a node that receives more counts each sender less.

Randomness comes from ``numpy.random.default_rng((seed, stream, round, step))``
with a fixed ``stream`` number per schedule, so that it is independent of
other draws keyed by ``(seed, something)`` elsewhere in flower-dl.

Above :data:`SPARSE_ABOVE` nodes :func:`mixing_at` returns a
``scipy.sparse.csr_matrix`` (a round's ``W(t)`` has ``O(n)`` non-zeros, and
``W @ X`` then costs ``O(n P)``); :func:`validate_round`, :func:`round_edges`
and ``strategies.mixing.mix`` take either.

The four schedules share their support masks and validation; their run-config
checks are in :mod:`flower_dl.topology.schedule_checks`, which imports no scipy.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy import sparse as sp

# the run-config checks live in the scipy-free checks module (every node process runs them); named here too
from flower_dl.topology.checks import _is_int
from flower_dl.topology.schedule_checks import SCHEDULES, check_gossip_steps, check_schedule

PROMISES_DOUBLY_STOCHASTIC: dict[str, bool | None] = {
    "static": None,
    "random-matching": True,
    "one-peer-exponential": True,
    "epidemic": False,
}
"""Whether each schedule's ``W(t)`` is doubly stochastic; ``None``: as the given ``W`` (see :func:`promises_doubly_stochastic`)."""

SPARSE_ABOVE = 256
"""Node count above which :func:`mixing_at` returns a CSR matrix by default."""

_STREAMS = {"random-matching": 0x6D61, "epidemic": 0x656C}
"""Fixed per-schedule stream numbers mixed into the seed (ASCII ``ma``, ``el``)."""


def promises_doubly_stochastic(schedule: str, W: np.ndarray | sp.spmatrix | None = None, atol: float = 1e-9) -> bool:
    """Whether ``schedule``'s ``W(t)`` is doubly stochastic; for ``static``, whether ``W``'s columns sum to 1.

    The promise is what :func:`validate_round` is asked to hold each round:
    averaging preserves the mean model only when the columns sum to 1.
    """
    promise = PROMISES_DOUBLY_STOCHASTIC[schedule]
    if promise is not None:
        return promise
    if W is None:
        raise ValueError("mixing-schedule 'static': pass W to know whether it is doubly stochastic")
    cols = np.asarray(W.sum(axis=0)).ravel()
    return bool(np.all(np.abs(cols - 1.0) <= atol))


# ---------------------------------------------------------------------------
# one round's W(t)
# ---------------------------------------------------------------------------


def exponential_offset(num_nodes: int, step_index: int) -> int:
    """Peer offset ``2^(t mod ceil(log2 n))`` of the one-peer exponential graph at gossip step ``t`` (0-based).

    ``ceil(log2 n)`` is ``(n - 1).bit_length()``, exact in integers; every
    offset is below ``n``, so no node is its own peer (``n = 2``: always 1).
    """
    tau = (num_nodes - 1).bit_length()
    return 1 << (step_index % tau)


def _rng(schedule: str, seed: int, round_: int, step: int) -> np.random.Generator:
    return np.random.default_rng((int(seed), _STREAMS[schedule], int(round_), int(step)))


def _undirected(edges: Iterable[tuple[int, int]], num_nodes: int) -> np.ndarray:
    """Edges as a sorted ``(m, 2)`` array of ``(min, max)`` pairs, so the same graph always gives the same draw."""
    pairs = sorted({(min(int(u), int(v)), max(int(u), int(v))) for u, v in edges})
    for u, v in pairs:
        if u == v or u < 0 or v >= num_nodes:
            raise ValueError(f"edges: ({u}, {v}) is not an edge between two different nodes of 0..{num_nodes - 1}")
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def _assemble(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, n: int, sparse: bool) -> np.ndarray | sp.csr_matrix:
    """Matrix with the given (distinct) entries, dense float64 or CSR."""
    if sparse:
        return sp.csr_matrix((vals, (rows, cols)), shape=(n, n), dtype=np.float64)
    W = np.zeros((n, n), dtype=np.float64)
    W[rows, cols] = vals
    return W


def random_matching(edges: np.ndarray, num_nodes: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """A random maximal matching: the edges in random order, each taken if both ends are still free.

    Every node is in at most one pair, and every edge has a matched end (else it
    would have been taken), so the matching is maximal.
    """
    free = np.ones(num_nodes, dtype=bool)
    pairs = []
    for u, v in edges[rng.permutation(len(edges))].tolist():
        if free[u] and free[v]:
            free[u] = free[v] = False
            pairs.append((u, v))
    return pairs


def epidemic_senders(num_nodes: int, peers: int, rng: np.random.Generator) -> np.ndarray:
    """Each node's ``peers`` receivers, uniform without replacement among the others: ``(n, peers)`` array, row = sender."""
    out = np.empty((num_nodes, peers), dtype=np.int64)
    for j in range(num_nodes):
        others = rng.choice(num_nodes - 1, size=peers, replace=False)
        out[j] = others + (others >= j)  # skip j itself
    return out


def mixing_at(
    schedule: str,
    round_: int,
    *,
    num_nodes: int,
    W: np.ndarray | sp.spmatrix | None = None,
    edges: Iterable[tuple[int, int]] | None = None,
    seed: int = 0,
    epidemic_peers: int = 1,
    step: int = 0,
    gossip_steps: int = 1,
    sparse: bool | None = None,
) -> np.ndarray | sp.csr_matrix:
    """The mixing matrix ``W(t)`` of one gossip step of one round.

    Parameters
    ----------
    schedule : str
        One of :data:`SCHEDULES`.
    round_ : int
        Server round, from 1.
    num_nodes : int
        ``n``.
    W : array or sparse matrix, shape (n, n), optional
        The topology's mixing matrix; required by ``static``.
    edges : iterable of (int, int), optional
        The topology's undirected edges (e.g. ``graph.edges``); required by
        ``random-matching``. Their order does not matter.
    seed : int, optional
        The run's seed (``random-matching``, ``epidemic``).
    epidemic_peers : int, optional
        ``epidemic``: models each node sends.
    step : int, optional
        Gossip step within the round, ``0..gossip_steps-1``: the random
        schedules draw afresh at each, and ``one-peer-exponential`` advances
        its offset at each (global step ``(round - 1) * gossip_steps + step``),
        so ``gossip_steps = log2 n`` averages exactly in every round.
    gossip_steps : int, optional
        Gossip steps per round (run-config ``gossip-steps``).
    sparse : bool, optional
        Return CSR (``True``) or dense (``False``); default: CSR above
        :data:`SPARSE_ABOVE` nodes.

    Returns
    -------
    numpy.ndarray or scipy.sparse.csr_matrix
        ``float64`` ``(n, n)``, row stochastic and non-negative.

    Raises
    ------
    ValueError
        For a bad schedule or ``epidemic_peers`` (:func:`check_schedule`), a
        round below 1, a step outside the round, or a missing ``W`` / ``edges``.
    """
    check_schedule(schedule, num_nodes, epidemic_peers)
    check_gossip_steps(gossip_steps)
    if not _is_int(round_) or round_ < 1:
        raise ValueError(f"round: {round_!r} must be an integer >= 1 (server rounds count from 1)")
    if not _is_int(step) or not 0 <= step < gossip_steps:
        raise ValueError(f"step: {step!r} is outside 0..gossip-steps-1 (gossip-steps is {gossip_steps})")
    if not _is_int(seed) or seed < 0:
        raise ValueError(f"seed: {seed!r} must be an integer >= 0")
    n = int(num_nodes)
    as_sparse = n > SPARSE_ABOVE if sparse is None else bool(sparse)
    diag = np.arange(n)

    if schedule == "static":
        if W is None:
            raise ValueError("mixing-schedule 'static': pass the topology's mixing matrix W")
        W = W if sp.issparse(W) else np.asarray(W, dtype=np.float64)
        if W.shape != (n, n):
            raise ValueError(f"mixing-schedule 'static': W has shape {W.shape}; expected ({n}, {n}) for num-nodes {n}")
        if as_sparse:
            return sp.csr_matrix(W, dtype=np.float64)
        return W.toarray().astype(np.float64) if sp.issparse(W) else np.array(W, dtype=np.float64)  # type: ignore[union-attr]  # scipy is untyped: issparse(W) means W is a sparse matrix

    if schedule == "one-peer-exponential":
        peer = (diag + exponential_offset(n, (round_ - 1) * gossip_steps + step)) % n
        rows = np.concatenate([diag, diag])
        cols = np.concatenate([diag, peer])
        return _assemble(rows, cols, np.full(2 * n, 0.5), n, as_sparse)

    rng = _rng(schedule, seed, round_, step)
    if schedule == "random-matching":
        if edges is None:
            raise ValueError("mixing-schedule 'random-matching': pass the topology's edges")
        pairs = np.array(random_matching(_undirected(edges, n), n, rng), dtype=np.int64).reshape(-1, 2)
        matched = np.zeros(n, dtype=bool)
        matched[pairs.ravel()] = True
        rows = np.concatenate([diag, pairs[:, 0], pairs[:, 1]])
        cols = np.concatenate([diag, pairs[:, 1], pairs[:, 0]])
        vals = np.concatenate([np.where(matched, 0.5, 1.0), np.full(2 * len(pairs), 0.5)])
        return _assemble(rows, cols, vals, n, as_sparse)

    receivers = epidemic_senders(n, int(epidemic_peers), rng)  # row j: whom j sends to
    senders = np.repeat(diag, receivers.shape[1])
    received = np.bincount(receivers.ravel(), minlength=n)
    weight = 1.0 / (1.0 + received)
    rows = np.concatenate([diag, receivers.ravel()])
    cols = np.concatenate([diag, senders])
    return _assemble(rows, cols, weight[rows], n, as_sparse)


# ---------------------------------------------------------------------------
# what a round allows, what it sent, and the check
# ---------------------------------------------------------------------------


def round_support(
    schedule: str,
    round_: int,
    *,
    num_nodes: int,
    edges: Iterable[tuple[int, int]] | None = None,
    step: int = 0,
    gossip_steps: int = 1,
) -> np.ndarray:
    """Boolean ``(n, n)`` mask of the entries ``W(t)`` may use that round (the diagonal always).

    ``static`` and ``random-matching``: the topology's edges, both ways.
    ``one-peer-exponential``: exactly ``i -> (i + 2^k) mod n`` of that step.
    ``epidemic``: every pair (it ignores the topology).
    """
    n = int(num_nodes)
    allowed = np.eye(n, dtype=bool)
    if schedule in ("static", "random-matching"):
        if edges is None:
            raise ValueError(f"mixing-schedule {schedule!r}: pass the topology's edges")
        pairs = _undirected(edges, n)
        allowed[pairs[:, 0], pairs[:, 1]] = True
        allowed[pairs[:, 1], pairs[:, 0]] = True
    elif schedule == "one-peer-exponential":
        diag = np.arange(n)
        allowed[diag, (diag + exponential_offset(n, (round_ - 1) * gossip_steps + step)) % n] = True
    elif schedule == "epidemic":
        allowed[:] = True
    else:
        raise ValueError(f"mixing-schedule: {schedule!r} is not a known schedule; allowed: {', '.join(SCHEDULES)}")
    return allowed


def _as_mask(support: np.ndarray | Iterable[tuple[int, int]], n: int) -> np.ndarray:
    """A boolean ``(n, n)`` mask, or undirected pairs allowed both ways; the diagonal added."""
    if isinstance(support, np.ndarray) and support.dtype == bool:
        if support.shape != (n, n):
            raise ValueError(f"support has shape {support.shape}; expected ({n}, {n})")
        mask = support.copy()
    else:
        mask = np.zeros((n, n), dtype=bool)
        pairs = _undirected(support, n)
        mask[pairs[:, 0], pairs[:, 1]] = True
        mask[pairs[:, 1], pairs[:, 0]] = True
    np.fill_diagonal(mask, True)
    return mask


def validate_round(
    W: np.ndarray | sp.spmatrix,
    *,
    support: np.ndarray | Iterable[tuple[int, int]],
    doubly_stochastic: bool,
    schedule: str = "",
    round_: int | None = None,
    atol: float = 1e-9,
) -> None:
    """Check one round's ``W(t)``: non-negative, rows summing to 1, on the allowed pairs, columns too where promised.

    Parameters
    ----------
    W : array or sparse matrix, shape (n, n)
        The round's mixing matrix.
    support : numpy.ndarray of bool, shape (n, n), or iterable of (int, int)
        Entries allowed off the diagonal: a mask (directed, row = receiver), or
        undirected edges allowed both ways. See :func:`round_support`.
    doubly_stochastic : bool
        Whether the columns must sum to 1 too (:func:`promises_doubly_stochastic`).
    schedule : str, optional
        Named in the message.
    round_ : int, optional
        Named in the message.
    atol : float, optional
        Tolerance of the sums and of "non-negative".

    Raises
    ------
    ValueError
        Naming the schedule, the round and the failing entry, row or column.
    """
    where = f"mixing-schedule {schedule!r}" + ("" if round_ is None else f", round {round_}")
    W = W if sp.issparse(W) else np.asarray(W, dtype=np.float64)
    if W.ndim != 2 or W.shape[0] != W.shape[1]:
        raise ValueError(f"{where}: W(t) must be square; got shape {W.shape}")
    n = W.shape[0]
    coo = sp.coo_matrix(W)
    rows, cols, vals = coo.row, coo.col, coo.data
    bad = np.flatnonzero(~np.isfinite(vals) | (vals < -atol))
    if bad.size:
        i, j, w = rows[bad[0]], cols[bad[0]], vals[bad[0]]
        raise ValueError(f"{where}: W[{i}, {j}] = {w:.6g}; every weight must be finite and >= 0")
    mask = _as_mask(support, n)
    bad = np.flatnonzero((vals > atol) & ~mask[rows, cols])
    if bad.size:
        i, j, w = rows[bad[0]], cols[bad[0]], vals[bad[0]]
        raise ValueError(
            f"{where}: W[{i}, {j}] = {w:.6g} but node {j} may not send to node {i} this round; "
            f"weights are allowed only on the round's pairs and the diagonal"
        )
    row_sums = np.bincount(rows, weights=vals, minlength=n)
    bad = np.flatnonzero(np.abs(row_sums - 1.0) > atol)
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"{where}: row {i} of W(t) sums to {row_sums[i]:.12g}; every row must sum to 1 (atol={atol:g})"
        )
    if doubly_stochastic:
        col_sums = np.bincount(cols, weights=vals, minlength=n)
        bad = np.flatnonzero(np.abs(col_sums - 1.0) > atol)
        if bad.size:
            j = int(bad[0])
            raise ValueError(
                f"{where}: column {j} of W(t) sums to {col_sums[j]:.12g}; this schedule promises a doubly "
                f"stochastic W(t), every column must sum to 1 (atol={atol:g})"
            )


def round_edges(W: np.ndarray | sp.spmatrix) -> list[tuple[int, int]]:
    """The models sent in a round: ``(sender j, receiver i)`` for every ``W_ij > 0`` with ``i != j``, sorted.

    Each pair is one whole model (or one compressed message) on the wire, which
    is how the strategy counts the bytes of a round.
    """
    coo = sp.coo_matrix(W)
    keep = (coo.data > 0) & (coo.row != coo.col)
    return sorted(zip(coo.col[keep].tolist(), coo.row[keep].tolist()))


def models_sent(W: np.ndarray | sp.spmatrix) -> np.ndarray:
    """Models each node sends in a round: the off-diagonal non-zeros of its column of ``W(t)`` (int64, shape (n,))."""
    coo = sp.coo_matrix(W)
    keep = (coo.data > 0) & (coo.row != coo.col)
    return np.bincount(coo.col[keep], minlength=W.shape[0]).astype(np.int64)
