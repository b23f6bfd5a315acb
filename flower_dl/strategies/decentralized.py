"""D-PSGD: decentralized SGD with a mixing matrix ``W`` (Lian et al., NeurIPS 2017), emulated on the server.

Each round every node trains its own model locally, then replaces it with the
weighted average of its neighbours' models, ``x_i <- sum_j W_ij x_j``: one
matrix product over the stacked, flattened parameters
(:func:`~flower_dl.strategies.mixing.mix`), once per gossip step of the
round's schedule (``mixing-schedule``, ``gossip-steps``).

A node whose training reply did not arrive keeps its previous model and sends
nothing; for the others the mixing weights are re-normalised over the models
that did arrive (see :mod:`flower_dl.strategies.mixing`), so every row still
sums to 1. Each node's ``gossip-bytes`` is one model per receiver per step.

The stack's rows are a model's floating arrays, float buffers (BatchNorm's
running statistics) mixed like parameters; integer counters are each node's
own (:class:`~flower_dl.strategies.base.ParameterStack`).
"""

from __future__ import annotations

import numpy as np
from flwr.app import Message

from flower_dl.strategies.base import DecentralizedStrategy
from flower_dl.strategies.mixing import mix, sent_per_node


def dpsgd_round(mixings, X: np.ndarray, arrived: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One D-PSGD gossip phase over trained models ``X``: ``X <- W_m' ... W_1' X``; also each node's vectors sent."""
    sent = np.zeros(len(X), dtype=np.int64)
    if not arrived.any():
        return X, sent
    for W in mixings:
        X = mix(W, X, arrived)
        sent += sent_per_node(W, arrived)
    return X, sent


class Decentralized(DecentralizedStrategy):
    """D-PSGD: write the trained models into the stack, then ``X <- W' X`` per gossip step."""

    def update(self, server_round: int, replies: dict[int, Message]) -> None:
        assert self.stack is not None
        arrived = self.write_trained(replies, self.stack.matrix)
        self.stack.matrix, sent = dpsgd_round(self.mixings(server_round), self.stack.matrix, arrived)
        self.record_gossip_bytes(server_round, sent, self.stack.nbytes)
