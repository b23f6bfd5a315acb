"""Privacy summaries and divergences: what a node reveals by sharing raw samples.

The original study measures leakage on *pixel-intensity distributions*: the
pixel-wise sum of a set of images divided by its total intensity, a 28x28
probability map. A node's leakage is

    leak_i = share_ratio * sum_{j in N(i)} KL(p_sent_i || q_exchanged_j)

with both maps smoothed by adding ``1e-5`` to every pixel before the log (and
not re-normalised, exactly as the study's code does). Nodes only ever report
these summaries to the server, never raw images.

Divergences come from scipy: ``scipy.special.rel_entr`` for KL and
``scipy.spatial.distance.jensenshannon`` for JS, imported by the divergence
functions (the server's side): nodes only compute the distributions, and
scipy.spatial would add ~0.25 s to every ClientApp process's start.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

SMOOTHING = 1e-5
"""Added to every entry of both distributions before the log (the study's eps)."""


def intensity_distribution(images: np.ndarray) -> np.ndarray:
    """Normalised pixel-intensity distribution of a set of images.

    Parameters
    ----------
    images : numpy.ndarray
        Raw (non-negative, un-normalised) images, shape ``(n, H, W)`` or
        ``(n, 1, H, W)``.

    Returns
    -------
    numpy.ndarray
        Float64 array of shape ``(H, W)`` summing to 1, or all zeros when there
        are no images (or they are all black): the study's "no transmitted
        data" case.
    """
    arr = np.asarray(images)
    if arr.ndim == 4:
        arr = arr[:, 0]
    if arr.ndim != 3:
        raise ValueError(f"images must have shape (n, H, W); got {arr.shape}")
    total_map = arr.sum(axis=0, dtype=np.float64)
    total = total_map.sum()
    if total <= 0:
        return np.zeros(arr.shape[1:], dtype=np.float64)
    return total_map / total


def label_distribution(labels: Iterable[int] | np.ndarray, num_classes: int = 10) -> np.ndarray:
    """Normalised label histogram (all zeros for no labels)."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)
    counts = counts[:num_classes].astype(np.float64)
    total = counts.sum()
    return counts / total if total > 0 else counts


def kl_divergence(p: np.ndarray, q: np.ndarray, smoothing: float = SMOOTHING) -> float:
    """Smoothed Kullback-Leibler divergence ``KL(p || q)`` in nats.

    ``sum (p + s) * log((p + s) / (q + s))``: the study's definition, computed
    with ``scipy.special.rel_entr``.
    """
    from scipy.special import rel_entr

    p_s = np.asarray(p, dtype=np.float64).ravel() + smoothing
    q_s = np.asarray(q, dtype=np.float64).ravel() + smoothing
    if p_s.shape != q_s.shape:
        raise ValueError(f"distributions differ in size: {p_s.shape} vs {q_s.shape}")
    return float(rel_entr(p_s, q_s).sum())


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence in bits (in [0, 1]); 0 when either side is empty."""
    from scipy.spatial.distance import jensenshannon

    p_a = np.asarray(p, dtype=np.float64).ravel()
    q_a = np.asarray(q, dtype=np.float64).ravel()
    if p_a.sum() <= 0 or q_a.sum() <= 0:
        return 0.0
    return float(jensenshannon(p_a, q_a, base=2) ** 2)


def leakage(
    share_ratio: float,
    sent: Mapping[tuple[int, int], np.ndarray],
    exchanged: Mapping[int, np.ndarray],
) -> dict[int, float]:
    """Per-node leakage of the original study.

    Parameters
    ----------
    share_ratio : float
        Fraction of its samples each node sent.
    sent : Mapping[tuple[int, int], numpy.ndarray]
        Directed edge ``(i, j)`` -> intensity distribution of what ``i`` sent
        to ``j`` (in the broadcast mode the same map for every ``j``).
    exchanged : Mapping[int, numpy.ndarray]
        Node -> intensity distribution of its data after the exchange.

    Returns
    -------
    dict[int, float]
        ``leak_i = share_ratio * sum_j KL(sent_ij || exchanged_j)``; an edge
        over which nothing was sent adds 0.
    """
    out: dict[int, float] = {}
    for (i, j), p_sent in sent.items():
        out.setdefault(i, 0.0)
        if share_ratio > 0 and np.any(p_sent):
            out[i] += share_ratio * kl_divergence(p_sent, exchanged[j])
    return out
