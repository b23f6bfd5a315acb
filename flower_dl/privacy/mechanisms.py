"""Privacy mechanisms of the exchange: what a node sends in place of its raw samples.

The run-config key ``exchange-mechanism`` picks one:

``raw``    the drawn samples themselves (the original study).
``noise``  each drawn image plus Gaussian pixel noise of std ``exchange-noise``
           (pixels scaled to ``[0, 1]``), clipped and rounded back to ``uint8``.
``mixup``  for each drawn sample of class ``c``, the mean of ``mixup-size`` of
           the node's own images of class ``c``, labelled ``c``: the averaged
           data of Mean Augmented Federated Learning (FedMix, Yoon et al.,
           ICLR 2021). FedMix averages local samples together with their
           labels; averaging within one class keeps the label a hard class,
           so the receiver trains on it like any other sample.

Whatever the mechanism, the share keeps its size and class histogram, so the
mechanisms differ only in what the images reveal. An item that is not a copy
of an original sample gets a *fresh id* (:func:`fresh_ids`): negative, so it
never equals a real id (those are indices, ``>= 0``), and it encodes the
sender, so two nodes never issue the same one. Exposure
(:mod:`flower_dl.privacy.exposure`) counts by id, so fresh items expose nothing
there; :func:`nn_distance` says how close they still come to the sender's
images (0 for copies).

Pure numpy; the node draws which samples to send (:func:`flower_dl.exchange.plan.draw_shares`)
and passes them through :func:`apply_mechanism` before sealing them.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np

from flower_dl import registry

__all__ = [
    "MECHANISMS",
    "add_noise",
    "apply_mechanism",
    "check_mechanism",
    "check_mixup_size",
    "class_means",
    "decode_fresh",
    "fresh_ids",
    "is_fresh",
    "nn_distance",
]

MECHANISMS: tuple[str, ...] = registry.MECHANISMS.names()
"""The values of ``exchange-mechanism``."""

# Fresh id layout: -(1 + node * 2**NODE_SHIFT + round * 2**ROUND_SHIFT + k), all in int64.
ROUND_SHIFT = 24
"""Bits for ``k``, the item's number within a node's round: up to 16,777,216 items."""
NODE_SHIFT = 40
"""Bits below the node: ``ROUND_SHIFT`` for ``k`` plus 16 for the round (up to 65,536 rounds)."""
MAX_NODES = 2 ** (63 - NODE_SHIFT)
"""Nodes ``0 .. MAX_NODES - 1`` (8,388,608) fit in the remaining bits of a negative int64."""


# ------------------------------------------------------------------ validation
def check_mechanism(mechanism: str, noise_std: float, mixup_size: int) -> None:
    """Validate ``exchange-mechanism``, ``exchange-noise`` and ``mixup-size`` before a mechanism is applied.

    The guard of :func:`apply_mechanism`, which anyone may call; a run config's
    values are checked once by its schema (:mod:`flower_dl.config`), with the
    same bounds. All three are checked whatever the mechanism. Whether
    ``mixup-size`` fits a node's classes depends on the node's data:
    :func:`check_mixup_size`.
    """
    if mechanism not in MECHANISMS:
        raise ValueError(
            f"exchange-mechanism: {mechanism!r} is not a known mechanism; allowed: {', '.join(MECHANISMS)}"
        )
    if isinstance(noise_std, bool) or not isinstance(noise_std, Real) or not math.isfinite(noise_std):
        raise ValueError(f"exchange-noise: {noise_std!r} must be a finite number >= 0")
    if noise_std < 0:
        raise ValueError(f"exchange-noise: {noise_std!r} must be >= 0")
    if isinstance(mixup_size, bool) or not isinstance(mixup_size, Integral) or mixup_size < 1:
        raise ValueError(f"mixup-size: {mixup_size!r} must be an integer >= 1")


def check_mixup_size(mixup_size: int, node: int, labels: np.ndarray) -> None:
    """Refuse a ``mixup-size`` larger than the node's smallest class.

    Each mean is drawn without replacement from one class, so every class the
    node holds must have at least ``mixup-size`` samples. Classes the node
    does not hold at all do not count (it never sends them).

    Parameters
    ----------
    mixup_size : int
        The run's ``mixup-size``.
    node : int
        The node's partition id (named in the error).
    labels : numpy.ndarray
        Labels of the node's original samples.
    """
    classes, counts = np.unique(np.asarray(labels, dtype=np.int64), return_counts=True)
    if len(classes) == 0:
        return
    smallest = int(np.argmin(counts))
    if mixup_size > counts[smallest]:
        raise ValueError(
            f"mixup-size: {mixup_size} is larger than node {node}'s smallest class "
            f"({counts[smallest]} samples of class {classes[smallest]})"
        )


# ------------------------------------------------------------------- fresh ids
def fresh_ids(node: int, count: int, round_: int = 0, start: int = 0) -> np.ndarray:
    """Ids for items a node makes (not copies of a sample), unique across nodes, rounds and items.

    ``id = -(1 + node * 2**40 + round_ * 2**24 + k)`` for ``k = start ..
    start + count - 1``. Negative, so no fresh id equals a real sample id
    (an index, ``>= 0``); the node, the round and ``k`` occupy separate bit
    ranges, so ids of different nodes or rounds never collide.

    Parameters
    ----------
    node : int
        The sender's partition id, ``0 .. MAX_NODES - 1``.
    count : int
        How many ids.
    round_ : int
        The exchange round, ``0 .. 65535`` (0 for the one exchange before training).
    start : int
        The first ``k``: how many fresh ids the node already issued this
        round (in the per-neighbour mode each neighbour's share needs its own
        range, or two receivers would hold different items under one id).

    Returns
    -------
    numpy.ndarray
        ``int64`` of length ``count``, strictly decreasing.
    """
    if not 0 <= node < MAX_NODES:
        raise ValueError(f"node: {node} is out of range for fresh ids; allowed: 0..{MAX_NODES - 1}")
    if not 0 <= round_ < 2 ** (NODE_SHIFT - ROUND_SHIFT):
        raise ValueError(
            f"round: {round_} is out of range for fresh ids; allowed: 0..{2 ** (NODE_SHIFT - ROUND_SHIFT) - 1}"
        )
    if count < 0 or start < 0 or start + count > 2**ROUND_SHIFT:
        raise ValueError(
            f"fresh ids: {start}..{start + count - 1} are out of range; allowed: at most {2**ROUND_SHIFT} "
            "items per node and round"
        )
    base = (node << NODE_SHIFT) + (round_ << ROUND_SHIFT)  # at most 2**63 - 2**24: fits int64
    return -(base + np.arange(start, start + count, dtype=np.int64)) - 1


def is_fresh(ids: np.ndarray) -> np.ndarray:
    """Boolean mask of the fresh ids (made items) among ``ids``; real sample ids are ``>= 0``."""
    return np.asarray(ids, dtype=np.int64) < 0


def decode_fresh(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(node, round, k)`` of fresh ids: who made an item, in which round, as which item."""
    arr = np.asarray(ids, dtype=np.int64)
    if np.any(arr >= 0):
        raise ValueError("ids: not all fresh; allowed: negative ids made by fresh_ids")
    value = -(arr + 1)
    return (
        value >> NODE_SHIFT,
        (value >> ROUND_SHIFT) & (2 ** (NODE_SHIFT - ROUND_SHIFT) - 1),
        value & (2**ROUND_SHIFT - 1),
    )


# ------------------------------------------------------------------ mechanisms
def apply_mechanism(
    mechanism: str,
    images: np.ndarray,
    labels: np.ndarray,
    ids: np.ndarray,
    *,
    node: int,
    rng: np.random.Generator,
    noise_std: float = 0.0,
    mixup_size: int = 1,
    own_images: np.ndarray | None = None,
    own_labels: np.ndarray | None = None,
    round_: int = 0,
    fresh_start: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What a node sends for the samples it drew: the samples, noisy copies, or class means.

    Parameters
    ----------
    mechanism : str
        ``exchange-mechanism``: one of :data:`MECHANISMS`.
    images, labels, ids : numpy.ndarray
        The drawn samples (``uint8`` images, ``int64`` labels and ids), aligned.
    node : int
        The sender's partition id (fresh ids and errors).
    rng : numpy.random.Generator
        The node's generator: the noise, and which images each mean takes.
    noise_std : float
        ``exchange-noise``: std of the pixel noise on the ``[0, 1]`` scale.
        0 sends exact copies, which keep their ids (they are the samples).
        Any positive std gives fresh ids, even should an image round back to
        itself: the receiver cannot tell, so the item is treated as made.
    mixup_size : int
        ``mixup-size``: how many own images of a class each mean averages.
        Always fresh ids, even for 1 (a real image under a new id: the
        nearest-neighbour distance, not the id, shows it is a copy).
    own_images, own_labels : numpy.ndarray, optional
        The node's original samples, required by ``mixup``: each item of
        class ``c`` averages ``mixup_size`` distinct images of class ``c``
        drawn from them, independently per item.
    round_, fresh_start : int
        Passed to :func:`fresh_ids`: in the per-neighbour mode give each
        share its own ``fresh_start`` (the ids already issued this round).

    Returns
    -------
    tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray]
        ``(images, labels, ids)`` of what is sent: as many items as drawn,
        with the drawn labels in the same order; images ``uint8`` of the
        input's shape.
    """
    check_mechanism(mechanism, noise_std, mixup_size)
    images = np.asarray(images)
    labels = np.asarray(labels, dtype=np.int64)
    ids = np.asarray(ids, dtype=np.int64)
    if not len(images) == len(labels) == len(ids):
        raise ValueError(f"images, labels and ids differ in length: {len(images)}, {len(labels)}, {len(ids)}")
    if mechanism == "raw" or (mechanism == "noise" and noise_std == 0):
        return images, labels, ids
    new_ids = fresh_ids(node, len(images), round_, fresh_start)
    if mechanism == "noise":
        return add_noise(images, noise_std, rng), labels.copy(), new_ids
    if own_images is None or own_labels is None:
        raise ValueError("exchange-mechanism: 'mixup' needs the node's own images and labels (own_images, own_labels)")
    return class_means(labels, own_images, own_labels, mixup_size, rng, node=node), labels.copy(), new_ids


def add_noise(images: np.ndarray, noise_std: float, rng: np.random.Generator) -> np.ndarray:
    """``uint8`` images plus Gaussian noise of std ``noise_std`` on the ``[0, 1]`` pixel scale.

    ``round(255 * clip(x / 255 + N(0, std^2), 0, 1))``: clipping keeps the
    result a valid image, so a receiver cannot tell noisy items by range.
    """
    scaled = np.asarray(images, dtype=np.float32) / 255.0
    noisy = scaled + np.float32(noise_std) * rng.standard_normal(scaled.shape, dtype=np.float32)
    return np.rint(np.clip(noisy, 0.0, 1.0) * 255.0).astype(np.uint8)


def class_means(
    labels: np.ndarray,
    own_images: np.ndarray,
    own_labels: np.ndarray,
    mixup_size: int,
    rng: np.random.Generator,
    *,
    node: int,
) -> np.ndarray:
    """One mean image per entry of ``labels``: ``mixup_size`` distinct own images of that class, averaged.

    Means are rounded half to even (``numpy.rint``) back to ``uint8``. Items
    are made in the order of ``labels``, each from its own draw, so two
    items of one class usually average different images.
    """
    own_images = np.asarray(own_images)
    own_labels = np.asarray(own_labels, dtype=np.int64)
    check_mixup_size(mixup_size, node, own_labels)
    out = np.empty((len(labels), *own_images.shape[1:]), dtype=np.uint8)
    for c in np.unique(labels).tolist():
        pool = np.flatnonzero(own_labels == c)
        if len(pool) == 0:
            raise ValueError(f"labels: class {c} is not among node {node}'s own samples; allowed: its own classes")
        for item in np.flatnonzero(labels == c).tolist():
            picked = pool[rng.choice(len(pool), size=mixup_size, replace=False)]
            out[item] = np.rint(own_images[picked].mean(axis=0, dtype=np.float64))
    return out


# ------------------------------------------------------------------- distance
def nn_distance(sent_images: np.ndarray, own_images: np.ndarray, chunk_elements: int = 2**22) -> float:
    """How close what was sent comes to the sender's data: mean distance to the nearest own image.

    For each sent item, the root-mean-square pixel distance (pixels scaled
    to ``[0, 1]``) to the closest of the sender's original images; the mean
    over items. 0 for raw copies; it grows as a mechanism moves items away
    from any single real sample, which id-based exposure cannot see.

    The nearest own image of item ``a`` minimises ``|a - b|^2 = |a|^2 + |b|^2
    - 2 a.b``; ``|a|^2`` is the same for every ``b``, so the search needs only
    ``|b|^2 - 2 a.b``: one matrix product per chunk of sent items
    (``chunk_elements`` bounds the block held at once), in float64 on the raw
    0..255 scale, where ``uint8`` images make every term an integer below
    2**53 and so the search exact. The distance to the chosen neighbour is
    then recomputed directly as ``sum((a - b)^2)``: never negative, and
    exactly 0 for an identical image whatever the input dtype.

    Parameters
    ----------
    sent_images : numpy.ndarray
        The items sent, ``(n, H, W)`` or ``(n, 1, H, W)``, pixels on the raw
        0..255 scale (``uint8``, as every mechanism returns them).
    own_images : numpy.ndarray
        The sender's original images, the same pixel count.

    Returns
    -------
    float
        In ``[0, 1]``; NaN when nothing was sent.
    """
    sent, own = _flat(sent_images), _flat(own_images)
    if len(sent) == 0:
        return float("nan")
    if len(own) == 0:
        raise ValueError("own_images: empty; allowed: the sender's original images (at least one)")
    if sent.shape[1] != own.shape[1]:
        raise ValueError(f"sent and own images differ in size: {sent.shape[1]} vs {own.shape[1]} pixels")
    own_sq = np.einsum("ij,ij->i", own, own)
    rows = max(1, chunk_elements // len(own))
    nearest = np.empty(len(sent), dtype=np.int64)
    for lo in range(0, len(sent), rows):
        block = sent[lo : lo + rows]
        d2 = own_sq[None, :] - 2.0 * (block @ own.T)  # |a|^2 is the same along a row: argmin needs no more
        nearest[lo : lo + rows] = np.argmin(d2, axis=1)
    diff = sent - own[nearest]
    rms = np.sqrt(np.einsum("ij,ij->i", diff, diff) / sent.shape[1]) / 255.0
    return float(rms.mean())


def _flat(images: np.ndarray) -> np.ndarray:
    """``(n, ...)`` images as ``(n, pixels)`` float64 (an empty set keeps its pixel count)."""
    arr = np.asarray(images, dtype=np.float64)
    return arr.reshape(arr.shape[0], int(np.prod(arr.shape[1:])))
