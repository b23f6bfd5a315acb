"""The per-node models of a decentralized strategy: :class:`ParameterStack`, one row per node.

The server emulates gossip, so it holds one model per node
(:class:`flower_dl.strategies.base.DecentralizedStrategy`); this is where they
are held, as one matrix an algorithm mixes with ``W`` in one product.

Models with buffers (BatchNorm's): the stack holds a model's whole state dict,
split by dtype. Floating arrays, parameters and float buffers (running means
and variances) alike, are the matrix every algorithm mixes, tracks (K-GT) and
compresses (Choco): a running statistic is a per-node estimate, and averaging
it as the weights are averaged keeps it matched to the averaged weights.
Integer arrays (counters such as ``num_batches_tracked``) are never averaged
or compressed: each node keeps its own, the value its last trained model
reported (one whose reply did not arrive keeps its previous), and receives it
with its model, in its own dtype; the average model (:meth:`ParameterStack.record` of
``None``) carries each counter's maximum over the nodes. The counters count
in a model's ``nbytes`` on the wire.
"""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord


def is_mixed(dtype: np.dtype) -> bool:
    """Whether arrays of ``dtype`` are mixed like parameters (floating) or kept per node (integer, bool)."""
    return bool(np.issubdtype(dtype, np.floating))


class ParameterStack:
    """Per-node models: their floating arrays as one ``(n, P)`` float32 matrix, their counters per node.

    A model's state dict holds parameters and buffers. Its floating arrays
    (parameters, and float buffers such as BatchNorm's running mean and
    variance) are the rows of :attr:`matrix`, which the algorithms mix, track
    and compress. Its other arrays (integer counters such as BatchNorm's
    ``num_batches_tracked``) are not quantities to average: a mean of step
    counts is no node's count, and a compressed or corrected one no count at
    all. They are kept in :attr:`counters`, one value per node, in their own
    dtype: a node's is what its last trained model reported
    (:meth:`keep_counters`), and goes back to that node with its model.
    """

    def __init__(self, template: ArrayRecord, num_nodes: int) -> None:
        arrays = dict(zip(template.keys(), template.to_numpy_ndarrays()))
        self.keys = list(arrays)
        """Every key of the model, in the template's order (the order of the records built here)."""
        self.float_keys = [k for k, a in arrays.items() if is_mixed(a.dtype)]
        """The keys of :attr:`matrix`'s columns, in order."""
        self.shapes = {k: a.shape for k, a in arrays.items()}
        self.dtypes = {k: a.dtype for k, a in arrays.items()}
        self.sizes = {k: int(arrays[k].size) for k in self.float_keys}
        self.matrix = np.tile(self.flatten(template), (num_nodes, 1))
        self.counters = {k: np.stack([a] * num_nodes) for k, a in arrays.items() if not is_mixed(a.dtype)}
        """Non-floating key -> ``(n, *shape)`` array of each node's own value, in the array's dtype."""
        self.nbytes = sum(a.nbytes for a in arrays.values())
        """Bytes of one model on the wire (every array, counters included, in its own dtype)."""

    def flatten(self, record: ArrayRecord) -> np.ndarray:
        """ArrayRecord -> flat float32 vector of its floating arrays (the columns of :attr:`matrix`)."""
        parts = [record[k].numpy().astype(np.float32).ravel() for k in self.float_keys]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)

    def keep_counters(self, node: int, record: ArrayRecord) -> None:
        """Take ``record``'s non-floating arrays as node ``node``'s own (its trained model's counters)."""
        for key, values in self.counters.items():
            values[node] = record[key].numpy()

    def record(self, node: int | None) -> ArrayRecord:
        """Node ``node``'s model as an ArrayRecord, its own counters included.

        ``None``: the average model (Flower's "global" one, which the
        ServerApp reports but no node trains): the mean of the floating
        arrays, and each counter's largest value over the nodes (for
        ``num_batches_tracked``: the most batches any node's statistics saw).
        """
        if node is None:
            row, counters = self.matrix.mean(axis=0), {k: v.max(axis=0) for k, v in self.counters.items()}
        else:
            row, counters = self.matrix[node], {k: v[node] for k, v in self.counters.items()}
        floats = self.as_record(row)
        return ArrayRecord({k: floats[k] if k in floats else Array(np.asarray(counters[k])) for k in self.keys})

    def as_record(self, row: np.ndarray) -> ArrayRecord:
        """A flat vector over the floating arrays (a model's, or a quantity such as a correction) as an ArrayRecord.

        Only the floating keys: a correction or a compressed difference has no counters.
        """
        out = ArrayRecord()
        offset = 0
        for key in self.float_keys:
            size = self.sizes[key]
            out[key] = Array(row[offset : offset + size].reshape(self.shapes[key]).astype(self.dtypes[key], copy=False))
            offset += size
        return out
