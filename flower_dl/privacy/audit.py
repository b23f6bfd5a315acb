"""The membership audit of a node's models: what a curious neighbour, or anyone with the final model, can tell.

Two attackers, where the protocol puts them:

* a **curious neighbour** sees every model node ``i`` sends in every round (in
  the emulation, the arrays ``i`` returns from local training, before
  mixing): the ``train`` handler attacks that model at the rounds
  ``mia-every`` names (:func:`flower_dl.privacy.attack_data.attacked_round`) and
  reports ``sent-*`` metrics;
* **anyone with the final model** (the evaluated model of the last round):
  the final evaluation reports ``mia-*`` and ``rmia-*`` metrics (the
  loss-threshold attack runs at every evaluation, as it always has).

Each attack is run twice on the same members and non-members
(:func:`flower_dl.privacy.attack_data.attack_samples`): the loss-threshold attack
(Yeom et al. 2018), and offline RMIA (Zarifzadeh et al. 2024,
:func:`flower_dl.privacy.membership.rmia_scores`) with ``mia-reference-models``
reference models. The audit runs on node ``i`` because only ``i`` knows which
samples are its members; everything the attack itself uses is what any
neighbour holds: the model ``i`` sends, and the public test split
(:func:`flower_dl.privacy.attack_data.public_split`), on which the reference models
are trained by the node's own training code (:func:`flower_dl.node.training.train`,
the same model, optimiser, learning rate, batch size and DP-SGD settings) for
as many epochs as the attacked model's training has had (round x
``local-epochs``): the attacker knows the protocol.

A reference model is trained in chunks of ``local-epochs`` epochs, each
chunk's randomness drawn from ``(seed, node, model, chunk)`` alone, so a
process that attacked round 5 goes on from there for round 10 (from the
weights in the node's state if another process trained them), and one with
neither trains the same model from scratch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from flower_dl.node import training
from flower_dl.node.state import CACHE, seed_of, seed_torch
from flower_dl.privacy import membership

if TYPE_CHECKING:
    from flower_dl.node.state import Node


def log_true_probs(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """``log Pr(y | x, model)`` per sample: minus its float64 loss (:func:`flower_dl.node.training.sample_losses`)."""
    return -training.sample_losses(model, images, labels)


def reference_models(node: Node, chunks: int) -> list[nn.Module]:
    """The node's ``mia-reference-models`` reference models, each trained for ``chunks`` x ``local-epochs`` epochs.

    Each is the run's model built from its own seed and trained on the
    reference half of the public test split; kept in the process cache and
    in the node's state (:meth:`Node.store_reference`) with the chunks done,
    so later attacked rounds, in this process or another, only add the
    missing ones.
    """
    from flower_dl.node.models import build_model

    cfg, spec = node.cfg, node.spec()
    _, _, test_x, test_y = node.tensors()
    reference, _ = node.public_split()
    ref_x, ref_y = test_x[reference], test_y[reference]
    models = []
    for k in range(cfg.mia_reference_models):
        key = ("reference-model", node.cell, node.partition_id, k, str(test_x.device))
        state = CACHE.get(key, lambda: {"done": 0, "model": None})
        if state["model"] is None or state["done"] > chunks:
            seed = seed_of(cfg.seed, node.partition_id, 13, k)
            state["model"] = build_model(cfg.model, spec.input_shape, spec.num_classes, seed=seed).to(test_x.device)
            state["done"] = 0
        stored = node.stored_reference(k)
        if stored is not None and state["done"] < stored[0] <= chunks:  # an earlier message, another process
            state["model"].load_state_dict(stored[1].to_torch_state_dict())
            state["done"] = stored[0]
        trains = state["done"] < chunks
        while state["done"] < chunks:
            chunk_seed = seed_of(cfg.seed, node.partition_id, 14, k, state["done"])
            seed_torch(chunk_seed, test_x.device)
            training.train(
                state["model"], ref_x, ref_y, epochs=cfg.local_epochs, lr=cfg.lr, momentum=cfg.momentum,
                batch_size=cfg.batch_size, generator=torch.Generator().manual_seed(chunk_seed), dp=node.dp(),
            )  # fmt: skip
            state["done"] += 1
        if trains:
            node.store_reference(k, state["done"], state["model"])
        models.append(state["model"])
    return models


def attack_metrics(node: Node, model: nn.Module, *, prefix: str = "", chunks: int = 0) -> dict[str, float]:
    """Membership attacks on ``model`` against the node's members: ``{prefix}mia-*``, and ``{prefix}rmia-*``.

    Parameters
    ----------
    node : Node
        The attacked node (its members, non-members and public test split).
    model : torch.nn.Module
        The attacked model.
    prefix : str
        ``"sent-"`` for the model the node sends, ``""`` for an evaluated one.
    chunks : int
        The attacked model's training so far, in rounds of ``local-epochs``:
        0 runs the loss-threshold attack only; > 0 also RMIA, with reference
        models trained as long (when ``mia-reference-models`` > 0).

    Returns
    -------
    dict[str, float]
        ``auc``, ``tpr-1fpr`` and ``tpr-0.1fpr`` of each attack run
        (:func:`flower_dl.privacy.membership.score_metrics`); empty when ``mia-samples`` is 0.
    """
    if node.mia_samples == 0:
        return {}
    members_x, members_y, nonmembers = node.attack_tensors()
    _, _, test_x, test_y = node.tensors()
    nonmembers_x, nonmembers_y = test_x[nonmembers], test_y[nonmembers]
    target_m, target_n = log_true_probs(model, members_x, members_y), log_true_probs(model, nonmembers_x, nonmembers_y)
    out = membership.score_metrics(target_m, target_n, f"{prefix}mia")
    if chunks > 0 and node.cfg.mia_reference_models > 0:
        _, population = node.public_split()
        z_x, z_y = test_x[population], test_y[population]
        refs = reference_models(node, chunks)

        def on_refs(x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
            return np.stack([log_true_probs(r, x, y) for r in refs], axis=1)

        target_z, ref_z = log_true_probs(model, z_x, z_y), on_refs(z_x, z_y)
        scores_m = membership.rmia_scores(target_m, on_refs(members_x, members_y), target_z, ref_z, tie_break=True)
        scores_n = membership.rmia_scores(
            target_n, on_refs(nonmembers_x, nonmembers_y), target_z, ref_z, tie_break=True
        )
        out.update(membership.score_metrics(scores_m, scores_n, f"{prefix}rmia"))
    return out
