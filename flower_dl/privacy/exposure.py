"""Exposure: what a node's exchange revealed of its samples, counted by id.

The membership attacks (:mod:`flower_dl.privacy.membership`) ask what a node's
trained model reveals; exposure asks what the exchange itself revealed: the
fraction of a node's original sample ids that ended up with other nodes
(:func:`exposed_fraction`, :func:`exposure_report`). It is counted by id, so it
sees only copies: an item built by a privacy mechanism
(:mod:`flower_dl.privacy.mechanisms`: a noisy image, a class mean) carries a
fresh, negative id that matches no original id and so exposes nothing here;
how close such items come to the sender's images is
:func:`flower_dl.privacy.mechanisms.nn_distance`'s question.

Pure numpy: the leakage hook (:mod:`flower_dl.privacy.leakage`) calls it with the ids nodes report.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

__all__ = ["edge_exposure", "exposed_fraction", "exposure_report"]


def _id_array(ids: Iterable[int] | np.ndarray) -> np.ndarray:
    return np.asarray(ids, dtype=np.int64).ravel()


def exposed_fraction(own_ids: np.ndarray, held_by_others: Iterable[np.ndarray]) -> float:
    """Fraction of a node's original samples that other nodes received in the exchange.

    A sample of node ``i`` counts as exposed when its id is among the ids
    that some *other* node *received* (from anyone). Not "holds": in the
    study's partitioners nodes that share a class can hold the very same
    sample from the start, and counting that would report exposure even at
    ``share-ratio = 0``, when nothing was exchanged. Received from anyone,
    not only from ``i``: once a copy of the sample sits on another node it is
    out, whoever sent it. Ids ``i`` itself received are not passed here
    (they are not in others' hands because of ``i``).

    Only copies are seen: a mechanism's fresh (negative) ids match no
    original id, so a noisy image or a class mean exposes nothing by id.

    Parameters
    ----------
    own_ids : numpy.ndarray
        Ids of the node's original samples.
    held_by_others : Iterable[numpy.ndarray]
        The ids each other node received in the exchange (before merging:
        a received sample the receiver already had still counts).

    Returns
    -------
    float
        In ``[0, 1]``; 0 for a node without samples (nothing to expose).
    """
    own = np.unique(_id_array(own_ids))
    if len(own) == 0:
        return 0.0
    arrays = [_id_array(ids) for ids in held_by_others]
    received = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)
    return float(np.isin(own, received).sum() / len(own))


def edge_exposure(own_ids: np.ndarray, sent_ids: np.ndarray) -> float:
    """Fraction of a node's original samples sent over one edge (fresh ids count for nothing)."""
    return exposed_fraction(own_ids, [sent_ids])


def exposure_report(
    own: Mapping[int, np.ndarray],
    sent: Mapping[tuple[int, int], np.ndarray],
) -> tuple[dict[int, float], dict[tuple[int, int], float]]:
    """Per-node and per-edge exposure of a whole exchange.

    Parameters
    ----------
    own : Mapping[int, numpy.ndarray]
        Node -> ids of its original samples.
    sent : Mapping[tuple[int, int], numpy.ndarray]
        Directed edge ``(src, dst)`` -> ids ``src`` sent to ``dst`` (in the
        broadcast mode the same ids for every ``dst``). What node ``j``
        received is the union over the edges into ``j``.

    Returns
    -------
    tuple[dict[int, float], dict[tuple[int, int], float]]
        ``node -> exposed_fraction`` (against what every *other* node
        received) for every node in ``own``, and ``(src, dst) ->
        edge_exposure`` of ``src``'s samples for every edge in ``sent``.
    """
    received: dict[int, list[np.ndarray]] = {}
    for (src, dst), ids in sent.items():
        if src == dst:
            raise ValueError(f"sent: edge ({src}, {dst}) is a self-loop; allowed: edges between two nodes")
        if src not in own:
            raise ValueError(f"sent: edge ({src}, {dst}) starts at node {src}, which has no entry in own")
        received.setdefault(dst, []).append(_id_array(ids))
    per_node = {
        i: exposed_fraction(ids, [arr for j, arrays in received.items() if j != i for arr in arrays])
        for i, ids in own.items()
    }
    per_edge = {(src, dst): edge_exposure(own[src], ids) for (src, dst), ids in sent.items()}
    return per_node, per_edge
