"""Choco-SGD: decentralized SGD with compressed gossip (Koloskova, Stich, Jaggi, ICML 2019).

Each node ``i`` keeps a public copy ``x_hat_j`` of each neighbour's model (and
of its own), known alike to every node that receives from ``j``. Round ``t``
(the paper's Algorithm 2, with local epochs in place of one SGD step):

1. the node trains: ``x_i <- x_i^{t+1/2}``;
2. it sends only ``q_i = Q(x_i - x_hat_i)``, and every holder of ``x_hat_i``
   adds it: ``x_hat_i <- x_hat_i + q_i``;
3. consensus step: ``x_i <- x_i + gamma sum_j W_ij (x_hat_j - x_hat_i)``
   (``choco-gamma``).

``Q`` is ``compression`` (:mod:`flower_dl.topology.compression`): ``top-k`` and
``random-k`` at ``compression-ratio`` (indices sent with the values), ``qsgd``
with ``qsgd-levels`` (Choco's scaled operator ``q/tau``, a contraction), or
``none``. With ``none`` and ``gamma = 1`` a round is exactly D-PSGD's
(``x_hat = x`` after step 2, then ``x <- W x``). With ``gossip-steps = m``
steps 2-3 repeat ``m`` times, each with a fresh ``Q``.

The paper starts from ``x_hat = 0``; here ``x_hat`` starts at the shared
initial model, which every node knows before round 1 (it equals the paper's
start followed by one free uncompressed exchange of that model): with a
sparsifier, starting from 0 would spend the first rounds only on
transmitting the initial weights.

A node whose reply did not arrive sends nothing (its public copy stays as it
was) and does no consensus step (it keeps its model); the others' consensus
steps use its public copy, which they hold. Its ``gossip-bytes`` are the
compressed message size times its receivers, per step.

Models with buffers: the models and public copies are the stack's floating
arrays only, float buffers (BatchNorm's running statistics) compressed and
gossiped like parameters; integer counters are each node's own, never
compressed or sent in the gossip
(:class:`~flower_dl.strategies.base.ParameterStack`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from flwr.app import Message
from scipy import sparse

from flower_dl.strategies.base import DecentralizedStrategy
from flower_dl.strategies.mixing import sent_per_node
from flower_dl.topology import compressed, compression

Compressor = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]
"""``(rows to send, gossip step) -> (decompressed Q of each row, wire bytes of each row)``."""


def choco_round(
    mixings: Sequence[np.ndarray | sparse.spmatrix],
    X: np.ndarray,
    X_hat: np.ndarray,
    gamma: float,
    arrived: np.ndarray,
    compress: Compressor,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The gossip half of one Choco-SGD round, over stacked vectors.

    Parameters
    ----------
    mixings : sequence of (n, n) matrices
        The round's mixing matrices, one per gossip step.
    X : numpy.ndarray, shape (n, P)
        The trained models ``x^{t+1/2}`` (rows of nodes that did not arrive: their model).
    X_hat : numpy.ndarray, shape (n, P)
        The public copies.
    gamma : float
        Consensus step size.
    arrived : numpy.ndarray of bool, shape (n,)
        Whose trained model arrived (only they send and step).
    compress : Compressor
        ``Q`` applied to the arrived rows of ``X - X_hat``.

    Returns
    -------
    X, X_hat : numpy.ndarray
        Models and public copies after the round.
    sent_bytes : numpy.ndarray of int64, shape (n,)
        Bytes each node sent.
    """
    X, X_hat = X.copy(), X_hat.copy()
    sent_bytes = np.zeros(len(X), dtype=np.int64)
    if not arrived.any():
        return X, X_hat, sent_bytes
    for step, W in enumerate(mixings):
        q, nbytes = compress(X[arrived] - X_hat[arrived], step)
        X_hat[arrived] += q
        # every receiver of j holds x_hat_j: the consensus uses all public copies, W unchanged
        pull = np.asarray(W @ X_hat, dtype=X.dtype) - X_hat
        X[arrived] += X.dtype.type(gamma) * pull[arrived]
        receivers = sent_per_node(W)
        sent_bytes[arrived] += nbytes * receivers[arrived]
    return X, X_hat, sent_bytes


class Choco(DecentralizedStrategy):
    """Choco-SGD: D-PSGD whose gossip sends compressed differences to public copies.

    Parameters
    ----------
    *args, **kwargs
        As for :class:`~flower_dl.strategies.base.DecentralizedStrategy`.
    gamma : float
        ``choco-gamma``, in (0, 1].
    method, ratio, levels : str, float, int
        ``compression``, ``compression-ratio``, ``qsgd-levels``.
    seed : int
        Seeds ``random-k`` and ``qsgd`` draws, per round and gossip step.
    """

    def __init__(
        self, *args: Any, gamma: float, method: str, ratio: float, levels: int, seed: int, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        compressed.check_compression(method, ratio, levels)
        self.gamma, self.method, self.ratio, self.levels, self.seed = gamma, method, ratio, levels, seed
        self.public: np.ndarray | None = None

    def compressor(self, server_round: int) -> Compressor:
        """``Q`` of ``server_round``: its random draws come from ``(seed, round, step)`` alone."""

        def compress(rows: np.ndarray, step: int) -> tuple[np.ndarray, np.ndarray]:
            rng = np.random.default_rng((self.seed, 0x63686F, server_round, step))
            return compression.compress_matrix(rows, self.method, ratio=self.ratio, levels=self.levels, rng=rng)

        return compress

    def update(self, server_round: int, replies: dict[int, Message]) -> None:
        assert self.stack is not None
        if self.public is None:  # the shared initial model, known to all
            self.public = self.stack.matrix.copy()
        arrived = self.write_trained(replies, self.stack.matrix)
        self.stack.matrix, self.public, sent_bytes = choco_round(
            self.mixings(server_round), self.stack.matrix, self.public, self.gamma, arrived,
            self.compressor(server_round),
        )  # fmt: skip
        self.record_gossip_bytes(server_round, sent_bytes, 1)
