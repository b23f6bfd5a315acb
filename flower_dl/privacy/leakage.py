"""Privacy summaries and divergences: what a node reveals by sharing raw samples.

The original study measures leakage on *pixel-intensity distributions*: the
pixel-wise sum of a set of images divided by its total intensity, a 28x28
probability map (for colour images one cell per pixel and channel, see
:func:`intensity_distribution`). A node's leakage is

    leak_i = share_ratio * sum_{j in N(i)} KL(p_sent_i || q_exchanged_j)

with both maps smoothed by adding ``1e-5`` to every pixel before the log (and
not re-normalised, exactly as the study's code does). Nodes only ever report
these summaries to the server, never raw images.

Divergences come from scipy: ``scipy.special.rel_entr`` for KL and
``scipy.spatial.distance.jensenshannon`` for JS, imported by the divergence
functions (the server's side): nodes only compute the distributions, and
importing scipy.spatial would lengthen every ClientApp process's start.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flower_dl.exchange.plan import payload_for
from flower_dl.privacy.exposure import edge_exposure, exposure_report

SMOOTHING = 1e-5
"""Added to every entry of both distributions before the log (the study's eps)."""


def intensity_distribution(images: np.ndarray) -> np.ndarray:
    """Normalised pixel-intensity distribution of a set of images: one probability per pixel and channel.

    The study's map, for grayscale images, is the pixel-wise sum of the
    images divided by their total intensity. For colour images each channel
    of each pixel is a cell of the same map (shape ``(H, W, C)``): the sum of
    that channel at that pixel over the images, divided by the total of every
    channel at every pixel. A grayscale image is the one-channel case, so its
    values are exactly the study's; and a colour share whose hues differ from
    the receiver's data moves mass between channels, which a map summed over
    channels would not see.

    Parameters
    ----------
    images : numpy.ndarray
        Raw (non-negative, un-normalised) images: grayscale ``(n, H, W)`` (or
        ``(n, 1, H, W)``), colour ``(n, H, W, C)`` channels-last.

    Returns
    -------
    numpy.ndarray
        Float64 array of shape ``(H, W)`` (grayscale) or ``(H, W, C)`` summing
        to 1, or all zeros when there are no images (or they are all black):
        the study's "no transmitted data" case.
    """
    arr = np.asarray(images)
    if arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim not in (3, 4):
        raise ValueError(f"images must have shape (n, H, W) or (n, H, W, C); got {arr.shape}")
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


# ------------------------------------------------------------ the leakage hook
@dataclass(frozen=True)
class NodeSummary:
    """What a node reports after the exchange: distributions of its data, never samples."""

    original_intensity: np.ndarray
    original_labels: np.ndarray
    exchanged_intensity: np.ndarray
    """Of its training set after the exchange (own + new received samples)."""
    exchanged_labels: np.ndarray
    sent_intensity: dict[int, np.ndarray]
    """Share key (a neighbour, or ``exchange.BROADCAST``) -> intensity map of what was sent."""
    sent_labels: dict[int, np.ndarray]
    num_train_examples: int
    new_from: dict[int, int] = field(default_factory=dict)
    """Source -> how many of its samples were new to this node."""
    own_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    """Ids of the node's original samples (for exposure: which of them other nodes received)."""
    received_ids: dict[int, np.ndarray] = field(default_factory=dict)
    """Source -> ids of every item received from it (fresh ids for items a mechanism made)."""
    sent_nn_distance: dict[int, float] = field(default_factory=dict)
    """Share key -> mean RMS pixel distance of the sent items to their nearest original image of the sender."""

    def sent_to(self, dst: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Intensity and label distributions of what went to neighbour ``dst`` (None: nothing was drawn)."""
        if not self.sent_intensity:
            return None
        return payload_for(self.sent_intensity, dst), payload_for(self.sent_labels, dst)


@dataclass(frozen=True)
class ExchangeReport:
    """The leakage hook's results: per-edge rows, per-node leakage, per-node intensity maps."""

    edges: list[dict[str, Any]]
    """One row per directed edge (the columns of ``edges.csv``)."""
    leakage: dict[int, float]
    """Node -> ``leak_i`` (NaN for a node that failed in the exchange)."""
    maps: dict[int, dict[str, np.ndarray]]
    """Node -> ``original`` / ``exchanged`` / ``transmitted`` intensity maps."""
    exposure: dict[int, float] = field(default_factory=dict)
    """Node -> ``exposed-fraction``: of its original samples, those some other node received (by id)."""
    nn_distance: dict[int, float] = field(default_factory=dict)
    """Node -> mean over its sent items of the RMS pixel distance to its nearest original image (0: copies)."""
    classes: dict[int, list[int]] = field(default_factory=dict)
    """Node -> the classes its original data hold (from its label distribution)."""


def exchange_report(
    share_ratio: float,
    neighbours: Mapping[int, Sequence[int]],
    summaries: Mapping[int, NodeSummary],
    sizes: Mapping[tuple[int, int], tuple[int, int]],
    failed: Mapping[int, str],
) -> ExchangeReport:
    """Assemble the leakage hook from the nodes' summaries (pure: no Flower, no dataset).

    Parameters
    ----------
    share_ratio : float
        The run's ``share-ratio``.
    neighbours : Mapping[int, Sequence[int]]
        Node -> its topology neighbours.
    summaries : Mapping[int, NodeSummary]
        The summaries of the nodes that took part in the whole exchange.
    sizes : Mapping[tuple[int, int], tuple[int, int]]
        Directed edge ``(i, j)`` -> ``(samples, bytes)`` relayed from ``i`` to ``j``.
    failed : Mapping[int, str]
        Nodes that failed in the exchange phase (and why).
    """
    edges, sent_maps = [], {}
    for i in sorted(neighbours):
        for j in neighbours[i]:
            row, sent_map = _edge_row(i, j, summaries, sizes, failed)
            edges.append(row)
            if sent_map is not None:
                sent_maps[(i, j)] = sent_map
    exchanged = {j: s.exchanged_intensity for j, s in summaries.items()}
    leak = {i: 0.0 for i in neighbours}
    leak.update(leakage(share_ratio, sent_maps, exchanged))
    leak.update({i: float("nan") for i in failed})
    maps = {i: _maps(s, neighbours[i]) for i, s in summaries.items()}
    classes = {i: np.flatnonzero(np.asarray(s.original_labels) > 0).tolist() for i, s in summaries.items()}
    return ExchangeReport(edges, leak, maps, *node_exposure(summaries, edges), classes=classes)


def node_exposure(
    summaries: Mapping[int, NodeSummary], edges: Sequence[Mapping[str, Any]]
) -> tuple[dict[int, float], dict[int, float]]:
    """Per node: ``exposed-fraction`` (from the ids every node reported) and the count-weighted mean ``nn-distance``.

    A node that failed in the exchange reported nothing: it has neither (its
    samples other nodes received still count for the node they came from).
    """
    own = {i: s.own_ids for i, s in summaries.items()}
    received = {(src, j): ids for j, s in summaries.items() for src, ids in s.received_ids.items() if src in own}
    exposure, _ = exposure_report(own, received)
    nn: dict[int, float] = {}
    for i in summaries:
        rows = [r for r in edges if r["src"] == i and r.get("nn-distance") is not None and r["samples-sent"] > 0]
        weight = sum(r["samples-sent"] for r in rows)
        nn[i] = sum(r["nn-distance"] * r["samples-sent"] for r in rows) / weight if weight else 0.0
    return exposure, nn


def _edge_row(
    i: int,
    j: int,
    summaries: Mapping[int, NodeSummary],
    sizes: Mapping[tuple[int, int], tuple[int, int]],
    failed: Mapping[int, str],
) -> tuple[dict[str, Any], np.ndarray | None]:
    """One row of ``edges.csv``, and the intensity map sent over the edge if it counts for leakage."""
    count, nbytes = sizes.get((i, j), (0, 0))
    row: dict[str, Any] = {"src": i, "dst": j, "samples-sent": count, "bytes-sent": nbytes}
    row["failed"] = int(i in failed or j in failed)
    row["failure"] = "; ".join(f"node {x} failed in the exchange" for x in (i, j) if x in failed)
    if j in summaries:
        row["new-samples"] = int(summaries[j].new_from.get(i, 0))
        if i in summaries:
            got = summaries[j].received_ids.get(i, np.zeros(0, np.int64))
            row["exposed-fraction"] = edge_exposure(summaries[i].own_ids, got)
    if i in summaries and summaries[i].sent_nn_distance and count > 0:
        row["nn-distance"] = payload_for(summaries[i].sent_nn_distance, j)
    sent = summaries[i].sent_to(j) if i in summaries else None
    if sent is None or j not in summaries or count <= 0:
        return row, None
    (p_sent, p_labels), receiver = sent, summaries[j]
    row["kl-sent-vs-exchanged"] = kl_divergence(p_sent, receiver.exchanged_intensity)
    row["js-sent-vs-exchanged"] = js_divergence(p_sent, receiver.exchanged_intensity)
    row["label-kl"] = kl_divergence(p_labels, receiver.exchanged_labels)
    return row, p_sent


def _maps(summary: NodeSummary, neighbours: Sequence[int]) -> dict[str, np.ndarray]:
    sent = summary.sent_to(neighbours[0]) if neighbours else None
    return {
        "original": summary.original_intensity,
        "exchanged": summary.exchanged_intensity,
        "transmitted": sent[0] if sent is not None else np.zeros_like(summary.original_intensity),
    }
