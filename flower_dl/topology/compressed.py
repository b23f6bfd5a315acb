"""What a Choco compressor sends, and the parameters both ends derive it from (numpy only).

The compressors themselves are in :mod:`flower_dl.topology.compression`; here
are their run-config checks (:func:`check_compression`: keys ``compression``,
``compression-ratio``, ``qsgd-levels``), the quantities both ends derive from
those keys and the model (``k = ceil(ratio * P)``, :func:`kept_coordinates`;
QSGD's scale :func:`qsgd_tau`; Choco's :func:`contraction_omega`), and the
message: :class:`Compressed`, whose :attr:`Compressed.nbytes` is the exact
wire size (:func:`message_bytes`).

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
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from flower_dl import registry
from flower_dl.topology.checks import _is_int

COMPRESSORS: tuple[str, ...] = registry.COMPRESSORS.names()
"""Names accepted by the run-config key ``compression``."""

MAX_QSGD_LEVELS = 2**31 - 1
"""Largest ``qsgd-levels``: a signed level must fit an int32."""


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
