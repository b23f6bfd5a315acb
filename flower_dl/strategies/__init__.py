"""Strategies, chosen by the run-config key ``strategy``.

``decentralized`` is flower-dl's own D-PSGD (:mod:`~flower_dl.strategies.decentralized`,
on the decentralized base of :mod:`~flower_dl.strategies.base`); every other
name is one of Flower's built-in strategies run as the parameter-server
baseline on the same exchanged data (:mod:`~flower_dl.strategies.server`).
Every strategy records per-node results in its ``history``
(:class:`~flower_dl.strategies.history.NodeHistory`), which is all the
ServerApp reads after the run.

Adding a strategy: one module with one class, and one line in :data:`REGISTRY`
(and its name in ``config.STRATEGY_NAMES``, which the run config validates
without importing Flower's strategies).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from flwr.serverapp import strategy as fl

from flower_dl.config import STRATEGY_NAMES, RunConfig
from flower_dl.strategies.base import EvaluationPlan
from flower_dl.strategies.decentralized import Decentralized
from flower_dl.strategies.server import FLOWER_STRATEGIES, parameter_server

Builder = Callable[[RunConfig, np.ndarray, Mapping[int, int]], fl.Strategy]


FLOWER_KWARGS: dict[str, dict[str, Callable[[RunConfig], Any]]] = {
    "fedprox": {"proximal_mu": lambda cfg: cfg.proximal_mu},
}
"""Run-config values a Flower strategy takes beyond the sampling (FedProx's mu)."""


def _flower(name: str) -> Builder:
    cls = parameter_server(FLOWER_STRATEGIES[name])
    extra = FLOWER_KWARGS.get(name, {})

    def make(cfg: RunConfig, W: np.ndarray, node_ids: Mapping[int, int]) -> fl.Strategy:
        n = cfg.num_nodes
        return cls(
            fraction_train=1.0, fraction_evaluate=1.0, min_train_nodes=n, min_evaluate_nodes=n,
            min_available_nodes=n, node_ids=node_ids, run_config=cfg.to_run_config(), evaluation=evaluation_plan(cfg),
            **{key: value(cfg) for key, value in extra.items()},
        )  # fmt: skip

    return make


def _decentralized(cfg: RunConfig, W: np.ndarray, node_ids: Mapping[int, int]) -> fl.Strategy:
    return Decentralized(W, node_ids, cfg.to_run_config(), evaluation_plan(cfg))


def evaluation_plan(cfg: RunConfig) -> EvaluationPlan:
    """When the run config asks for evaluations, and in which message."""
    return EvaluationPlan(cfg.num_server_rounds, cfg.evaluate_every, cfg.evaluate_in_train)


REGISTRY: dict[str, Builder] = {"decentralized": _decentralized, **{name: _flower(name) for name in FLOWER_STRATEGIES}}
assert tuple(REGISTRY) == STRATEGY_NAMES, "config.STRATEGY_NAMES and REGISTRY must agree"


def build_strategy(cfg: RunConfig, mixing_matrix: np.ndarray, node_ids: Mapping[int, int]) -> fl.Strategy:
    """The strategy named by ``cfg.strategy``, for the nodes ``node_ids`` (partition-id -> Flower node id)."""
    return REGISTRY[cfg.strategy](cfg, mixing_matrix, node_ids)
