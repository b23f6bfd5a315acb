"""The gossip step and its measures, as matrix algebra over stacked parameters (numpy only).

Node models are the rows of one ``(n, P)`` matrix ``X``; one gossip step is
``X <- W X``. When some nodes' new models did not arrive, the step uses the
mixing matrix actually applicable (:func:`effective_mixing`):

* a node that did not arrive keeps its own row: ``W'_i = e_i``;
* an arrived node averages over the arrived nodes only, with its weights
  re-normalised: ``W'_ij = W_ij / sum_{k arrived} W_ik`` for arrived ``j``,
  0 otherwise, so every row still sums to 1.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from flower_dl.topology.schedules import models_sent


def mix(W: np.ndarray | sparse.spmatrix, X: np.ndarray, arrived: np.ndarray | None = None) -> np.ndarray:
    """One gossip step ``X <- W' X`` over stacked parameters.

    Parameters
    ----------
    W : array or sparse matrix, shape (n, n)
        Row-stochastic mixing matrix.
    X : numpy.ndarray, shape (n, P)
        Stacked node parameters (rows of nodes that failed hold their previous model).
    arrived : numpy.ndarray of bool, shape (n,), optional
        Which nodes' new models arrived; ``None`` means all.

    Returns
    -------
    numpy.ndarray
        The mixed stack; a node that did not arrive keeps its row, and each
        arrived node averages over arrived neighbours with re-normalised weights.
    """
    if arrived is not None and not arrived.all():
        W = effective_mixing(W, arrived).astype(X.dtype)
    return np.asarray(W @ X, dtype=X.dtype)


def effective_mixing(W: np.ndarray | sparse.spmatrix, arrived: np.ndarray) -> np.ndarray | sparse.csr_matrix:
    """The mixing matrix actually applied when only ``arrived`` nodes replied (see the module docstring).

    Sparse in, sparse out: a 1,000-node ``W`` densified would turn the step
    into a dense (1000 x 1000) by (1000 x P) product, hundreds of GFLOP a
    round, whenever one node's reply is missing.
    """
    if sparse.issparse(W):
        W_eff = sparse.csr_matrix(W, dtype=np.float64, copy=True)
        W_eff.data *= arrived[W_eff.indices]  # drop the weights of nodes that did not arrive
        sums = np.asarray(W_eff.sum(axis=1)).ravel()
        scale = np.divide(1.0, sums, out=np.zeros_like(sums), where=sums > 0)
        W_eff = sparse.diags(np.where(arrived, scale, 0.0)) @ W_eff
        W_eff = W_eff + sparse.diags((~arrived).astype(np.float64))  # a node that did not arrive keeps its row
        W_eff.eliminate_zeros()
        return W_eff.tocsr()
    W = np.asarray(W, dtype=np.float64)
    W_eff = W * arrived[None, :]
    sums = W_eff.sum(axis=1, keepdims=True)
    W_eff = np.divide(W_eff, sums, out=np.zeros_like(W_eff), where=sums > 0)
    for i in np.flatnonzero(~arrived):
        W_eff[i] = 0.0
        W_eff[i, i] = 1.0
    return W_eff


def sent_per_node(W: np.ndarray | sparse.spmatrix, arrived: np.ndarray | None = None) -> np.ndarray:
    """Vectors each node sends in one gossip step: its receivers under the applicable mixing (int64, shape (n,)).

    A node ``j`` sends to every ``i != j`` with ``W'_ij > 0`` (:func:`effective_mixing`
    when some nodes did not arrive: a node that did not arrive sends nothing).
    """
    if arrived is not None and not arrived.all():
        W = effective_mixing(W, arrived)
    return models_sent(W)


def consensus_distance(X: np.ndarray) -> float:
    """Mean squared distance of the node models to their average: ``1/n sum_i ||x_i - x_bar||^2``."""
    mean = X.mean(axis=0, dtype=np.float64)
    total = 0.0
    for start in range(0, len(X), 64):  # in blocks: no (n, P) float64 temporary
        diff = X[start : start + 64] - mean
        total += float(np.einsum("ij,ij->", diff, diff))
    return total / len(X)
