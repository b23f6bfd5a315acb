"""A user's own decentralized rule, in the user's own module: ``strategy = "my_gossip:LazyGossip"``.

A rule subclasses flower-dl's decentralized base and overrides one method,
``update``, as D-PSGD does: the base sends each node its own model, collects
the trained ones and calls ``update`` with the replies that arrived; the
per-node models are the rows of ``self.stack.matrix``. The ServerApp imports
this module, so it must be on ``PYTHONPATH`` or installed.
"""

import numpy as np

from flower_dl.strategies.base import DecentralizedStrategy
from flower_dl.strategies.mixing import mix, sent_per_node


class LazyGossip(DecentralizedStrategy):
    """Lazy D-PSGD: each node keeps half its own model, ``x_i <- (x_i + sum_j W_ij x_j) / 2``.

    The lazy step (mixing with ``(I + W) / 2``) is the usual remedy when
    ``W`` has eigenvalues near -1, where plain gossip oscillates.
    """

    keep = 0.5
    """The weight a node keeps on its own trained model."""

    def update(self, server_round: int, replies: dict) -> None:
        stack = self.stack
        arrived = self.write_trained(replies, stack.matrix)
        sent = np.zeros(self.num_nodes, dtype=np.int64)
        for W in self.mixings(server_round):
            stack.matrix = self.keep * stack.matrix + (1 - self.keep) * mix(W, stack.matrix, arrived)
            sent += sent_per_node(W, arrived)
        self.record_gossip_bytes(server_round, sent, stack.nbytes)
