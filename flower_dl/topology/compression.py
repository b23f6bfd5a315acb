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

Here ``k = ceil(ratio * P)`` (at least 1, see :func:`kept_coordinates`).
:func:`compress` returns a :class:`Compressed`, what would travel, whose
:attr:`Compressed.nbytes` is the exact wire size; :func:`decompress` turns it
back into a dense vector. The server emulates every node, so
:func:`compress_matrix` compresses the rows of an ``(n, P)`` stack at once and
returns the dense result with the bytes of each row. Run-config checks are in
:func:`check_compression` (keys ``compression``, ``compression-ratio``,
``qsgd-levels``).

Wire sizes count the payload only: the method, ``P``, ``ratio`` and ``s`` come
from the run config and the model, so both ends know them. The encodings
counted are

* ``none``: ``P`` float32 values, ``4 P`` bytes;
* ``top-k`` and ``random-k``: ``k`` int32 indices and ``k`` float32 values,
  ``8 k`` bytes (random-k's indices are counted too: a receiver cannot
  regenerate them without sharing the sender's random state);
* ``qsgd``: the float32 norm (4 bytes) and, per coordinate, the signed level
  ``sign(v_i) xi_i`` in ``-s..s`` as one fixed-width symbol of
  ``b = ceil(log2(2 s + 1))`` bits, packed into one bit string for the whole
  vector: ``4 + ceil(P b / 8)`` bytes. (``tau`` needs no bytes: it follows from
  ``P`` and ``s``.) This is simpler and a little larger than the Elias coding
  of the QSGD paper.

One module although over ~400 lines: about half of it is docstrings (the wire formats
the byte counts rest on); the four compressors share their checks and byte accounting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import numpy as np

from flower_dl import registry
from flower_dl.topology.checks import _is_int

COMPRESSORS: tuple[str, ...] = registry.COMPRESSORS.names()
"""Names accepted by the run-config key ``compression``."""

MAX_QSGD_LEVELS = 2**31 - 1
"""Largest ``qsgd-levels``: a signed level must fit an int32."""

_BLOCK_ROWS = 64
"""Rows compressed together by :func:`compress_matrix`: bounds its temporaries to a few ``(64, P)`` arrays."""


# ---------------------------------------------------------------------------
# parameter checks
# ---------------------------------------------------------------------------


def check_compression(method: object, ratio: object, levels: object) -> None:
    """Check a compressor's ``compression``, ``compression-ratio`` and ``qsgd-levels`` before it is used.

    The guard of this module's functions, which anyone may call; a run config's
    values are checked once by its schema (:mod:`flower_dl.config`), with the
    same bounds. All three are checked whatever the method.

    Parameters
    ----------
    method : object
        Value of ``compression``; one of :data:`COMPRESSORS`.
    ratio : object
        Value of ``compression-ratio``; a number in ``(0, 1]``.
    levels : object
        Value of ``qsgd-levels``; an integer in ``1..MAX_QSGD_LEVELS``.

    Raises
    ------
    ValueError
        Naming the key, the value and what is allowed, e.g.
        ``"compression-ratio: 0 is outside (0, 1]"``.
    """
    if not isinstance(method, str) or method not in COMPRESSORS:
        raise ValueError(f"compression: {method!r} is not a known compressor; allowed: {', '.join(COMPRESSORS)}")
    if isinstance(ratio, (bool, np.bool_)) or not isinstance(ratio, (int, float, np.integer, np.floating)):
        raise ValueError(f"compression-ratio: {ratio!r} is not a number; allowed: a number in (0, 1]")
    if not (0.0 < float(ratio) <= 1.0):  # also refuses nan
        raise ValueError(f"compression-ratio: {ratio!r} is outside (0, 1]")
    if not _is_int(levels) or int(levels) < 1:
        raise ValueError(f"qsgd-levels: {levels!r} must be an integer >= 1")
    if int(levels) > MAX_QSGD_LEVELS:
        raise ValueError(f"qsgd-levels: {levels!r} is too large; allowed: an integer in 1..{MAX_QSGD_LEVELS}")


def kept_coordinates(size: int, ratio: float) -> int:
    """Number of coordinates ``k`` that top-k and random-k keep of a vector of ``size``.

    ``k = ceil(ratio * size)``, at least 1 (a message that carries nothing would
    stall Choco) and at most ``size``. The product is rounded to 9 decimals
    first, so that a ratio written in decimal keeps what it says: ``0.07 *
    100`` is ``7.000000000000001`` in floating point, and a plain ``ceil`` would
    keep 8.
    """
    if size == 0:
        return 0
    return min(size, max(1, math.ceil(round(ratio * size, 9))))


def qsgd_tau(size: int, levels: int) -> float:
    """Choco's QSGD scale ``tau = 1 + min(P / s^2, sqrt(P) / s)``.

    ``tau - 1`` is QSGD's variance bound, ``E ||q(v) - v||^2 <= (tau - 1)
    ||v||^2``; dividing ``q`` by ``tau`` makes it a contraction with ``omega = 1
    / tau`` (Koloskova et al. 2019, Section 3).
    """
    return 1.0 + min(size / levels**2, math.sqrt(size) / levels)


def contraction_omega(method: str, size: int, *, ratio: float, levels: int) -> float:
    """The ``omega`` of Choco's contraction bound for the operator :func:`compress` applies by default.

    Choco's consensus step size ``gamma`` depends on it. ``E ||Q(v) - v||^2 <=
    (1 - omega) ||v||^2`` holds with ``omega = 1`` (none), ``k / P`` (top-k,
    random-k) and ``1 / tau`` (scaled qsgd, see :func:`qsgd_tau`). Unscaled QSGD
    is no contraction and has no ``omega``.
    """
    check_compression(method, ratio, levels)
    if method == "none" or size == 0:
        return 1.0
    if method == "qsgd":
        return 1.0 / qsgd_tau(size, levels)
    return kept_coordinates(size, ratio) / size


def qsgd_bits(levels: int) -> int:
    """Bits per coordinate of QSGD's signed level in ``-s..s``: ``ceil(log2(2 s + 1))``.

    Computed exactly in integers: ``ceil(log2(m))`` is ``(m - 1).bit_length()``.
    """
    return (2 * levels).bit_length()


def _level_dtype(levels: int) -> type[np.signedinteger]:
    """Smallest signed integer type holding ``-s..s``: what the levels are stored in before bit-packing."""
    if levels <= np.iinfo(np.int8).max:
        return np.int8
    if levels <= np.iinfo(np.int16).max:
        return np.int16
    return np.int32


# ---------------------------------------------------------------------------
# the message
# ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Compressed:
    """What one node would send for a vector of ``size`` coordinates.

    Parameters
    ----------
    method : str
        One of :data:`COMPRESSORS`.
    size : int
        ``P``, the length of the vector it encodes.
    indices : numpy.ndarray or None
        top-k and random-k: the kept coordinates, int32, increasing.
    values : numpy.ndarray or None
        none: the whole vector; top-k and random-k: the values at ``indices``
        (float32, unscaled).
    norm : float
        qsgd: ``||v||_2`` as sent (a float32 value); 0 otherwise.
    signed_levels : numpy.ndarray or None
        qsgd: ``sign(v_i) xi_i`` in ``-levels..levels``, one per coordinate
        (the smallest signed integer type that holds them; on the wire, packed
        to :func:`qsgd_bits` bits each).
    levels : int
        qsgd: ``s``; 0 otherwise.
    scaled : bool
        qsgd: whether the receiver divides by :func:`qsgd_tau` (Choco's
        contraction) when decoding.
    """

    method: str
    size: int
    indices: np.ndarray | None = None
    values: np.ndarray | None = None
    norm: float = 0.0
    signed_levels: np.ndarray | None = None
    levels: int = 0
    scaled: bool = False

    @property
    def nbytes(self) -> int:
        """Exact wire size in bytes, in the encoding the module docstring describes."""
        return message_bytes(
            self.method, self.size, kept=0 if self.indices is None else len(self.indices), levels=self.levels
        )


def message_bytes(method: str, size: int, *, kept: int = 0, levels: int = 0) -> int:
    """Wire size of one compressed vector of ``size`` coordinates (see the module docstring).

    Parameters
    ----------
    method : str
        One of :data:`COMPRESSORS`.
    size : int
        ``P``.
    kept : int, optional
        top-k and random-k: coordinates sent.
    levels : int, optional
        qsgd: ``s``.
    """
    if method == "none":
        return 4 * size
    if method in ("top-k", "random-k"):
        return 8 * kept
    if method == "qsgd":
        return 4 + -(-size * qsgd_bits(levels) // 8)
    raise ValueError(f"compression: {method!r} is not a known compressor; allowed: {', '.join(COMPRESSORS)}")


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
