"""K-GT: gradient tracking with local steps (Liu, Lin, Koloskova, Stich 2023, arXiv 2301.01313).

D-PSGD's nodes drift towards their own data between mixings: with non-IID
data its fixed point is biased away from the minimiser of the average loss.
K-GT gives each node a correction ``c_i`` (sum over nodes 0) that estimates
the difference between the average gradient and its own, and adds it at every
local step. Round ``t``, for each node ``i`` (the paper's Algorithm 1 with
server step ``eta_s = 1``, as in its experiments):

1. ``z_i <- x_i``; ``K_i`` local SGD steps ``z_i <- z_i - lr (g_i(z_i) + c_i)``
   (on the node: :func:`flower_dl.node.training.train` with ``correction``);
2. ``y_i = (x_i - z_i) / (K_i lr)``, the round's average update direction;
3. ``c_i <- c_i - y_i + sum_j W_ij y_j`` and ``x_i <- sum_j W_ij z_j``: the
   trackers mix with the same ``W`` as the models (:func:`kgt_round`).

``c_i`` starts at 0. The server emulates the gossip, so it holds every
``c_i`` and sends it in the ``train`` message (record ``correction``); the
node keeps nothing between rounds, and a restarted node loses nothing.
Momentum, when set, applies to the gradient only, and the correction is
added outside it, as the reference implementation does.

A node whose reply did not arrive keeps ``x_i`` and ``c_i`` and sends
nothing; the others mix over the arrived nodes with re-normalised weights (as
D-PSGD, :mod:`flower_dl.strategies.mixing`). That mixing, like a schedule
that is only row stochastic (``epidemic``), would let ``sum_i c_i`` drift
from 0; the arrived nodes' corrections are shifted by the drift's mean so it
stays 0 (exactly what the algorithm needs: the trackers' sum is what makes the
average model follow the average gradient). Each node sends two vectors per
receiver and step (``z_i`` and ``y_i``): its ``gossip-bytes`` count both.

Models with buffers: ``X``, ``Z`` and ``C`` are the stack's floating arrays
only (:class:`~flower_dl.strategies.base.ParameterStack`); integer counters
are each node's own and never tracked. Float buffers (BatchNorm's running
statistics) are mixed as D-PSGD mixes them; the server cannot tell them from
parameters, so their ``c_i`` entries are computed and sent too, and the node
skips them (SGD does not move a buffer; :func:`flower_dl.node.training.train`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from flwr.app import ConfigRecord, Message, RecordDict
from scipy import sparse

from flower_dl import protocol
from flower_dl.strategies.base import DecentralizedStrategy
from flower_dl.strategies.mixing import mix, sent_per_node


def kgt_round(
    mixings: Sequence[np.ndarray | sparse.spmatrix],
    X: np.ndarray,
    Z: np.ndarray,
    C: np.ndarray,
    step_size: np.ndarray,
    arrived: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The server's half of one K-GT round, over stacked vectors.

    Parameters
    ----------
    mixings : sequence of (n, n) matrices
        The round's mixing matrices, one per gossip step.
    X : numpy.ndarray, shape (n, P)
        The models the nodes started the round from.
    Z : numpy.ndarray, shape (n, P)
        The trained models (rows of nodes that did not arrive: their ``X`` row).
    C : numpy.ndarray, shape (n, P)
        The corrections the nodes trained with.
    step_size : numpy.ndarray, shape (n,)
        ``K_i * lr`` of each node (0: the node took no step; its ``y_i`` is 0).
    arrived : numpy.ndarray of bool, shape (n,)
        Whose trained model arrived.

    Returns
    -------
    X, C : numpy.ndarray
        The next round's models and corrections (``sum_i c_i`` unchanged).
    sent : numpy.ndarray of int64, shape (n,)
        Vectors each node sent (two per receiver and gossip step).
    """
    moved = arrived & (step_size > 0)
    Y = np.zeros_like(X)
    Y[moved] = (X[moved] - Z[moved]) / step_size[moved, None].astype(X.dtype)
    X_new, WY = Z, Y
    sent = np.zeros(len(X), dtype=np.int64)
    if arrived.any():
        for W in mixings:
            X_new, WY = mix(W, X_new, arrived), mix(W, WY, arrived)
            sent += 2 * sent_per_node(W, arrived)
    C_new = C.copy()
    C_new[arrived] += WY[arrived] - Y[arrived]
    if arrived.any():
        drift = C_new.sum(axis=0, dtype=np.float64) - C.sum(axis=0, dtype=np.float64)
        C_new[arrived] -= (drift / arrived.sum()).astype(C.dtype)
    return X_new, C_new, sent


class GradientTracking(DecentralizedStrategy):
    """K-GT: D-PSGD plus a per-node correction, sent with the model and mixed like it.

    Parameters
    ----------
    *args, **kwargs
        As for :class:`~flower_dl.strategies.base.DecentralizedStrategy`.
    lr : float
        The nodes' learning rate (run-config ``lr``): ``y_i`` divides by ``K_i lr``.
    """

    def __init__(self, *args: Any, lr: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lr = lr
        self.corrections: np.ndarray | None = None

    def train_content(self, node: int, config: ConfigRecord) -> RecordDict:
        content = super().train_content(node, config)
        if self.corrections is not None:  # c_i = 0 in round 1: nothing to send
            assert self.stack is not None
            content[protocol.CORRECTION] = self.stack.as_record(self.corrections[node])
        return content

    def update(self, server_round: int, replies: dict[int, Message]) -> None:
        assert self.stack is not None
        X = self.stack.matrix
        if self.corrections is None:
            self.corrections = np.zeros_like(X)
        Z = X.copy()
        arrived = self.write_trained(replies, Z)
        step_size = np.zeros(self.num_nodes)
        for pid, reply in replies.items():
            step_size[pid] = protocol.num_steps(reply) * self.lr
        self.stack.matrix, self.corrections, sent = kgt_round(
            self.mixings(server_round), X, Z, self.corrections, step_size, arrived
        )
        self.record_gossip_bytes(server_round, sent, self.stack.nbytes)
