"""The exchange: who sends what to whom, and how a node merges what it received.

Before training, each node draws ``share-ratio`` of its *original* samples
and sends them to its topology neighbours:

``broadcast``      one sample, the same for every neighbour (the original study);
``per-neighbour``  an independent sample for each neighbour.

Every sample carries its stable id (its index in the training set). A node
merges what it received with its own data, keeping each id once: a sample it
already holds, or one received from two neighbours, counts once.

Everything here is pure (numpy in, numpy out) so the exchange is tested
without Flower; :mod:`flower_dl.protocol` puts the arrays in Flower messages.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

T = TypeVar("T")

BROADCAST = -1
"""Key of the single sample in the broadcast mode."""


def share_size(num_samples: int, share_ratio: float) -> int:
    """How many samples a node with ``num_samples`` sends: ``floor(share_ratio * n)``.

    ``share_ratio = 1`` sends everything; 0 sends nothing.
    """
    return int(np.floor(share_ratio * num_samples + 1e-9))


def draw_shares(
    own_ids: np.ndarray,
    share_ratio: float,
    neighbours: Sequence[int],
    mode: str,
    rng: np.random.Generator,
) -> dict[int, np.ndarray]:
    """Positions (into ``own_ids``) of the samples a node sends.

    Returns
    -------
    dict[int, numpy.ndarray]
        ``{BROADCAST: positions}`` in the broadcast mode, else
        ``{neighbour: positions}``; positions are sorted, without repeats.
    """
    size = share_size(len(own_ids), share_ratio)

    def draw() -> np.ndarray:
        return np.sort(rng.choice(len(own_ids), size=size, replace=False)).astype(np.int64)

    if mode == "broadcast":
        return {BROADCAST: draw()}
    if mode == "per-neighbour":
        return {int(j): draw() for j in neighbours}
    raise ValueError(f"exchange-mode: {mode!r} is not known; allowed: broadcast, per-neighbour")


def payload_for(shares: Mapping[int, T], neighbour: int) -> T:
    """Which of a node's shares goes to ``neighbour``: the one broadcast share, or its own.

    The one place that decides it, for whatever is kept per share (positions,
    ciphertexts, intensity maps): the node when it seals, the server when it
    relays samples in clear, the leakage hook when it pairs a sent map with
    its receiver.
    """
    return shares[BROADCAST] if BROADCAST in shares else shares[neighbour]


@dataclass(frozen=True)
class Merged:
    """A node's training set after the exchange."""

    ids: np.ndarray
    """Sample ids, own first then received, each once."""
    received_positions: np.ndarray
    """Positions (into the concatenated received arrays) of the kept received samples."""
    new_per_source: dict[int, int]
    """Source node -> how many of its samples were new to this node."""


def merge(own_ids: np.ndarray, received: Iterable[tuple[int, np.ndarray]]) -> Merged:
    """Dedupe received samples against own data and each other.

    Parameters
    ----------
    own_ids : numpy.ndarray
        Ids of the node's original samples.
    received : Iterable[tuple[int, numpy.ndarray]]
        ``(source node, ids)`` in the order they were concatenated. A sample
        sent by two sources is credited to the first.
    """
    seen = set(np.asarray(own_ids).tolist())
    keep: list[int] = []
    kept_ids: list[int] = []
    new_per_source: dict[int, int] = {}
    offset = 0
    for src, ids in received:
        count = 0
        for pos, sid in enumerate(np.asarray(ids).tolist()):
            if sid not in seen:
                seen.add(sid)
                keep.append(offset + pos)
                kept_ids.append(sid)
                count += 1
        new_per_source[int(src)] = count
        offset += len(ids)
    all_ids = np.concatenate([np.asarray(own_ids, dtype=np.int64), np.asarray(kept_ids, dtype=np.int64)])
    return Merged(all_ids, np.asarray(keep, dtype=np.int64), new_per_source)
