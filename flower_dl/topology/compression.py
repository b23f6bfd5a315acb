"""Compression operators for compressed gossip (Choco-SGD), on flat float32 parameter vectors (numpy only).

Choco-SGD (Koloskova, Stich and Jaggi, ICML 2019, "Decentralized Stochastic
Optimization and Gossip Algorithms with Compressed Communication") lets each
node send ``Q(x_i - x_hat_i)`` instead of its model. Its convergence proof
needs ``Q`` to be a *contraction* in expectation,

    E ||Q(v) - v||^2 <= (1 - omega) ||v||^2,   0 < omega <= 1,

and the operators here are the paper's examples of such a ``Q`` (its
Section 3; the reference code is epfml/ChocoSGD,
``convex_code/logistic.py`` and ``dl_code/pcode/utils/sparsification.py``):

``none``
    The identity (``omega = 1``): plain gossip, for comparison.
``top-k``
    Keep the ``k`` coordinates of largest ``|v_i|`` (``omega = k / P``).
``random-k``
    Keep ``k`` coordinates drawn uniformly without replacement, values *as
    they are* (``omega = k / P``). Choco uses this biased ``rand_k``: the
    unbiased variant rescales by ``P / k`` and is then no contraction.
``qsgd``
    QSGD with ``s`` levels (Alistarh et al., NeurIPS 2017): ``q(v)_i =
    ||v|| sign(v_i) xi_i / s`` with ``xi_i = floor(s |v_i| / ||v||)`` plus one
    with probability the fractional part, so that ``E q(v) = v``. Choco
    divides by ``tau = 1 + min(P / s^2, sqrt(P) / s)`` (its "qsgd-biased"),
    which turns the unbiased, too-noisy ``q`` into a contraction with
    ``omega = 1 / tau``. :func:`compress` returns Choco's scaled operator by
    default (``scaled=True``); ``scaled=False`` gives unbiased QSGD.

Here ``k = ceil(ratio * P)`` (at least 1, see
:func:`flower_dl.topology.compressed.kept_coordinates`). :func:`compress`
returns a :class:`~flower_dl.topology.compressed.Compressed`, what would travel, whose
:attr:`Compressed.nbytes` is the exact wire size; :func:`decompress` turns it
back into a dense vector. The server emulates every node, so
:func:`compress_matrix` compresses the rows of an ``(n, P)`` stack at once and
returns the dense result with the bytes of each row. The run-config checks
(:func:`flower_dl.topology.compressed.check_compression`), ``k``, ``tau``,
``omega`` and the message with its wire format are in
:mod:`flower_dl.topology.compressed`.
"""

from __future__ import annotations

from typing import cast

import numpy as np

from flower_dl.topology.compressed import (
    COMPRESSORS,
    Compressed,
    _level_dtype,
    check_compression,
    kept_coordinates,
    message_bytes,
    qsgd_tau,
)

_BLOCK_ROWS = 64
"""Rows compressed together by :func:`compress_matrix`: bounds its temporaries to a few ``(64, P)`` arrays."""


# ---------------------------------------------------------------------------
# compress / decompress one vector
# ---------------------------------------------------------------------------


def _as_vector(v: np.ndarray) -> np.ndarray:
    a = np.asarray(v, dtype=np.float32)
    if a.ndim != 1:
        raise ValueError(f"compress: expected a flat vector of shape (P,); got shape {a.shape}")
    return a


def compress(
    v: np.ndarray,
    method: str,
    *,
    ratio: float = 1.0,
    levels: int = 1,
    rng: np.random.Generator | None = None,
    scaled: bool = True,
) -> Compressed:
    """Compress a flat vector with one of :data:`COMPRESSORS`.

    Parameters
    ----------
    v : numpy.ndarray, shape (P,)
        The vector (cast to float32). Non-finite entries are not checked.
    method : str
        One of :data:`COMPRESSORS`.
    ratio : float, optional
        top-k and random-k: fraction of coordinates kept,
        ``k = kept_coordinates(P, ratio)``.
    levels : int, optional
        qsgd: the number of levels ``s >= 1``.
    rng : numpy.random.Generator, optional
        Required by random-k (the coordinates) and qsgd (the rounding); the
        draws are the only randomness, so a seeded generator reproduces them.
    scaled : bool, optional
        qsgd only: ``True`` (default) is Choco's operator ``q(v) / tau``, a
        contraction; ``False`` is unbiased QSGD, ``E q(v) = v``.

    Returns
    -------
    Compressed
        What would travel; :func:`decompress` gives the dense ``Q(v)``.

    Raises
    ------
    ValueError
        For bad parameters (see :func:`check_compression`), a vector that is not
        flat, or a missing ``rng``.

    Notes
    -----
    top-k keeps the ``k`` largest ``|v_i|``, ties going to the lower index (the
    first ``k`` of a stable descending sort by ``|v_i|``), so it is
    deterministic. qsgd of the zero vector sends norm 0 and all-zero levels.
    """
    check_compression(method, ratio, levels)
    a = _as_vector(v)
    size = a.size
    if method == "none":
        return Compressed("none", size, values=a.copy())
    if method == "top-k":
        keep = _top_k_mask(a[None, :], kept_coordinates(size, ratio))[0]
        indices = np.flatnonzero(keep).astype(np.int32)
        return Compressed("top-k", size, indices=indices, values=a[indices])
    if rng is None:
        raise ValueError(f"compress: {method} draws random numbers; pass rng (a numpy.random.Generator)")
    if method == "random-k":
        indices = _random_k_indices(size, kept_coordinates(size, ratio), rng)
        return Compressed("random-k", size, indices=indices, values=a[indices])
    norm, signed = _qsgd_levels(a[None, :], levels, rng)
    return Compressed(
        "qsgd",
        size,
        norm=float(norm[0]),
        signed_levels=signed[0].astype(_level_dtype(levels)),
        levels=levels,
        scaled=scaled,
    )


def decompress(c: Compressed) -> np.ndarray:
    """Dense float32 vector of length ``c.size`` that the receiver reconstructs from ``c``.

    Coordinates a sparsifier did not send are 0; qsgd decodes ``norm *
    signed_level / s``, divided by :func:`qsgd_tau` when ``c.scaled``.
    """
    if c.method == "none":
        return np.asarray(c.values, dtype=np.float32).copy()
    if c.method in ("top-k", "random-k"):
        out = np.zeros(c.size, dtype=np.float32)
        out[c.indices] = c.values
        return out
    if c.method == "qsgd":
        scale = _qsgd_scale(c.size, c.levels, c.scaled)
        factor = np.float64(c.norm) * (scale / c.levels)  # the same expression as compress_matrix: equal bits
        signed_levels = cast(np.ndarray, c.signed_levels)  # a qsgd message carries them (compress sets them)
        return (factor * signed_levels.astype(np.float64)).astype(np.float32)
    raise ValueError(f"compression: {c.method!r} is not a known compressor; allowed: {', '.join(COMPRESSORS)}")


# ---------------------------------------------------------------------------
# the operators, on row blocks (shared by compress and compress_matrix)
# ---------------------------------------------------------------------------


def _top_k_mask(B: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of the ``k`` largest ``|B_ij|`` of each row, ties to the lower column.

    Linear time per row: the ``k``-th largest ``|B_ij|`` (``np.partition``) is a
    threshold; everything above it is kept, and of the entries equal to it the
    first ones, by column, until ``k`` are kept.
    """
    P = B.shape[1]
    if k >= P:
        return np.ones(B.shape, dtype=bool)
    mags = np.abs(B)
    threshold = np.partition(mags, P - k, axis=1)[:, P - k : P - k + 1]
    above = mags > threshold
    ties = mags == threshold
    room = k - above.sum(axis=1, keepdims=True)
    if (ties.sum(axis=1, keepdims=True) <= room).all():  # the usual case: no tie to break
        return above | ties
    return above | (ties & (np.cumsum(ties, axis=1) <= room))


def _random_k_indices(size: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` distinct coordinates drawn uniformly from ``0..size-1``, as increasing int32."""
    return np.sort(rng.choice(size, size=k, replace=False)).astype(np.int32)


def _qsgd_levels(B: np.ndarray, levels: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Float32 norms and signed QSGD levels ``sign(B_ij) xi_ij`` of each row of ``B`` (integer-valued float64).

    ``xi = floor(r) + [u < r - floor(r)]`` with ``r = |B_ij| s / ||B_i||`` and ``u``
    uniform in ``[0, 1)``: ``E xi = r``, so the decoded ``||B_i|| sign xi / s`` is
    unbiased. The norm used is the float32 one that is sent, so the receiver
    decodes with exactly the norm the levels were computed for. One uniform
    is drawn per coordinate, row after row, so a block and its rows one at a
    time consume ``rng`` identically. Computed in place: this is the costly
    step of emulating many nodes.
    """
    B64 = B.astype(np.float64)
    norms = np.sqrt(np.einsum("ij,ij->i", B64, B64)).astype(np.float32)
    norms64 = norms.astype(np.float64)
    per_unit = np.divide(levels, norms64, out=np.zeros_like(norms64), where=norms64 > 0)
    frac = np.abs(B64)
    frac *= per_unit[:, None]  # r
    xi = np.floor(frac)
    frac -= xi
    xi += rng.random(B.shape) < frac
    np.minimum(xi, levels, out=xi)  # r <= s up to rounding
    return norms, np.copysign(xi, B64, out=xi)


def _qsgd_scale(size: int, levels: int, scaled: bool) -> float:
    return 1.0 / qsgd_tau(size, levels) if scaled and size > 0 else 1.0


# ---------------------------------------------------------------------------
# many nodes at once
# ---------------------------------------------------------------------------


def compress_matrix(
    X: np.ndarray,
    method: str,
    *,
    ratio: float = 1.0,
    levels: int = 1,
    rng: np.random.Generator | None = None,
    scaled: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Compress every row of ``X`` and decompress it again, as the server does for the nodes it emulates.

    Row ``i`` of the result equals ``decompress(compress(X[i], ...))`` with the
    rows compressed in order from the same ``rng``, so emulating ``n`` nodes at
    once changes no result. Rows are processed in blocks of 64 with vectorised
    top-k and qsgd, so the temporaries stay a few ``(64, P)`` arrays.

    Parameters
    ----------
    X : numpy.ndarray, shape (n, P)
        One vector per row (cast to float32).
    method, ratio, levels, rng, scaled
        As for :func:`compress`.

    Returns
    -------
    dense : numpy.ndarray, shape (n, P), float32
        ``Q(X_i)`` per row.
    nbytes : numpy.ndarray, shape (n,), int64
        Wire size of each row's message (:attr:`Compressed.nbytes`).
    """
    check_compression(method, ratio, levels)
    A = np.asarray(X, dtype=np.float32)
    if A.ndim != 2:
        raise ValueError(f"compress_matrix: expected a matrix of shape (n, P); got shape {A.shape}")
    n, P = A.shape
    k = kept_coordinates(P, ratio)
    nbytes = np.full(n, message_bytes(method, P, kept=k, levels=levels), dtype=np.int64)
    if method == "none":
        return A.copy(), nbytes
    if method != "top-k" and rng is None:
        raise ValueError(f"compress_matrix: {method} draws random numbers; pass rng (a numpy.random.Generator)")
    out = np.zeros((n, P), dtype=np.float32)
    if method == "random-k":
        assert rng is not None  # refused above for every method but top-k
        for i in range(n):
            idx = _random_k_indices(P, k, rng)
            out[i, idx] = A[i, idx]
        return out, nbytes
    scale = _qsgd_scale(P, levels, scaled)
    for start in range(0, n, _BLOCK_ROWS):
        B = A[start : start + _BLOCK_ROWS]
        if method == "top-k":
            out[start : start + len(B)] = np.where(_top_k_mask(B, k), B, np.float32(0.0))
        else:
            assert rng is not None  # refused above for every method but top-k
            norms, signed = _qsgd_levels(B, levels, rng)
            factor = norms.astype(np.float64)[:, None] * (scale / levels)
            out[start : start + len(B)] = factor * signed
    return out, nbytes
