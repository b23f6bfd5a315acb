"""D-PSGD: decentralized SGD with a mixing matrix ``W`` (Lian et al., NeurIPS 2017), emulated on the server.

Each round every node trains its own model locally, then replaces it with the
weighted average of its neighbours' models, ``x_i <- sum_j W_ij x_j``: one
matrix product over the stacked, flattened parameters
(:func:`~flower_dl.strategies.mixing.mix`).

A node whose training reply did not arrive keeps its previous model; for the
others the mixing weights are re-normalised over the models that did arrive
(see :mod:`flower_dl.strategies.mixing`), so every row still sums to 1.
"""

from __future__ import annotations

import numpy as np
from flwr.app import Message

from flower_dl import protocol
from flower_dl.strategies.base import DecentralizedStrategy
from flower_dl.strategies.mixing import mix


class Decentralized(DecentralizedStrategy):
    """D-PSGD: write the trained models into the stack, then ``X <- W' X``."""

    def update(self, server_round: int, replies: dict[int, Message]) -> None:
        assert self.stack is not None
        arrived = np.zeros(self.num_nodes, dtype=bool)
        for pid, reply in replies.items():
            self.stack.matrix[pid] = self.stack.flatten(protocol.reply_arrays(reply))
            arrived[pid] = True
        if arrived.any():
            self.stack.matrix = mix(self.mixing(server_round), self.stack.matrix, arrived)
