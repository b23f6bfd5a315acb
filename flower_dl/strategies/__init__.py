"""Strategies, chosen by the run-config key ``strategy``.

flower-dl's decentralized algorithms, each a small subclass of the
decentralized base of :mod:`~flower_dl.strategies.base` (gossip emulated on
the server), each mixing with the run's schedule (``mixing-schedule``,
``gossip-steps``):

=====================  =====================================================  =========================================
``strategy``           algorithm                                              module
=====================  =====================================================  =========================================
``decentralized``      D-PSGD (Lian et al., NeurIPS 2017)                     :mod:`~flower_dl.strategies.decentralized`
``gradient-tracking``  K-GT (Liu, Lin, Koloskova, Stich 2023)                 :mod:`~flower_dl.strategies.gradient_tracking`
``choco``              Choco-SGD (Koloskova, Stich, Jaggi, ICML 2019)         :mod:`~flower_dl.strategies.choco`
=====================  =====================================================  =========================================

Every other name is one of Flower's built-in strategies run as the
parameter-server baseline on the same exchanged data
(:mod:`~flower_dl.strategies.server`).
Every strategy records per-node results in its ``history``
(:class:`~flower_dl.strategies.history.NodeHistory`), which is all the
ServerApp reads after the run.

A user's own rule needs no change here: ``strategy = "my_pkg.gossip:MyRule"``
names a subclass of :class:`~flower_dl.strategies.base.DecentralizedStrategy`
that overrides :meth:`~flower_dl.strategies.base.DecentralizedStrategy.update`
(as D-PSGD, K-GT and Choco do); the ServerApp imports it
(:func:`strategy_class`), so it must be importable there (installed, or on
``PYTHONPATH``; see docs/bring-your-own.md).

Adding a built-in strategy: one module with one class, its name in
:data:`flower_dl.registry.STRATEGIES` (which the run config validates without
importing Flower), and, if it takes run-config values beyond the base's, one
entry in :data:`FLOWER_KWARGS` or :data:`DECENTRALIZED_KWARGS`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

import numpy as np
from flwr.serverapp import strategy as fl

from flower_dl import registry
from flower_dl.config import ConfigError, RunConfig
from flower_dl.strategies.base import DecentralizedStrategy, EvaluationPlan, GossipSchedule
from flower_dl.strategies.server import FLOWER_STRATEGIES, CentralDP, parameter_server

__all__ = ["DecentralizedStrategy", "build_strategy", "builder", "strategy_class"]

Builder = Callable[[RunConfig, np.ndarray, Mapping[int, int], Iterable[tuple[int, int]]], fl.Strategy]


FLOWER_KWARGS: dict[str, dict[str, Callable[[RunConfig], Any]]] = {
    "fedprox": {"proximal_mu": lambda cfg: cfg.proximal_mu},
}
"""Run-config values a Flower strategy takes beyond the sampling (FedProx's mu)."""


def _flower(name: str) -> Builder:
    cls = parameter_server(FLOWER_STRATEGIES[name])
    extra = FLOWER_KWARGS.get(name, {})

    def make(cfg: RunConfig, W: np.ndarray, node_ids: Mapping[int, int], edges=()) -> fl.Strategy:
        n = cfg.num_nodes
        strategy = cls(
            fraction_train=1.0, fraction_evaluate=1.0, min_train_nodes=n, min_evaluate_nodes=n,
            min_available_nodes=n, node_ids=node_ids, run_config=cfg.to_run_config(), evaluation=evaluation_plan(cfg),
            **{key: value(cfg) for key, value in extra.items()},
        )  # fmt: skip
        if cfg.central_dp_noise_multiplier > 0:
            return CentralDP(strategy, cfg.central_dp_noise_multiplier, cfg.central_dp_clip, cfg.dp_delta)
        return cast(fl.Strategy, strategy)  # a ParameterServer mixed into a Flower Strategy (parameter_server)

    return make


DECENTRALIZED_KWARGS: dict[str, dict[str, Callable[[RunConfig], Any]]] = {
    "gradient-tracking": {"lr": lambda cfg: cfg.lr},
    "choco": {
        "gamma": lambda cfg: cfg.choco_gamma,
        "method": lambda cfg: cfg.compression,
        "ratio": lambda cfg: cfg.compression_ratio,
        "levels": lambda cfg: cfg.qsgd_levels,
        "seed": lambda cfg: cfg.seed,
    },
}
"""Run-config values a decentralized algorithm takes beyond the base's."""


def strategy_class(value: str) -> type[DecentralizedStrategy]:
    """The decentralized class a ``strategy`` value names: a built-in one, or a user's by import path.

    Raises
    ------
    ConfigError
        Naming ``strategy``: an import path that does not import, names
        nothing, or names something that is not a subclass of
        :class:`~flower_dl.strategies.base.DecentralizedStrategy`.
    """
    try:
        cls = registry.STRATEGIES.load(value)
    except registry.RegistryError as err:
        raise ConfigError(str(err)) from None
    if not (isinstance(cls, type) and issubclass(cls, DecentralizedStrategy)):
        what = f"the class {cls.__module__}.{cls.__qualname__}" if isinstance(cls, type) else f"a {type(cls).__name__}"
        raise ConfigError(
            f"strategy: {value!r} names {what}; allowed: a subclass of "
            "flower_dl.strategies.base.DecentralizedStrategy that overrides update()"
        )
    if cls.update is DecentralizedStrategy.update:
        raise ConfigError(f"strategy: {value!r} does not override update(), the one method a rule must write")
    return cls


def _decentralized(value: str) -> Builder:
    cls, extra = strategy_class(value), DECENTRALIZED_KWARGS.get(value, {})

    def make(cfg: RunConfig, W: np.ndarray, node_ids: Mapping[int, int], edges=()) -> fl.Strategy:
        return cls(
            W, node_ids, cfg.to_run_config(), evaluation_plan(cfg), gossip_schedule(cfg, edges),
            **{key: value(cfg) for key, value in extra.items()},
        )  # fmt: skip

    return make


def gossip_schedule(cfg: RunConfig, edges: Iterable[tuple[int, int]] = ()) -> GossipSchedule:
    """The mixing matrices the run config asks for, on the topology's ``edges``."""
    return GossipSchedule(
        cfg.mixing_schedule, cfg.gossip_steps, cfg.seed, cfg.epidemic_peers, tuple((int(u), int(v)) for u, v in edges)
    )


def evaluation_plan(cfg: RunConfig) -> EvaluationPlan:
    """When the run config asks for evaluations, and in which message."""
    return EvaluationPlan(cfg.num_server_rounds, cfg.evaluate_every, cfg.evaluate_in_train)


def builder(value: str) -> Builder:
    """The builder of the strategy a ``strategy`` value names (a Flower one is the parameter-server baseline)."""
    return _flower(value) if value in FLOWER_STRATEGIES else _decentralized(value)


def build_strategy(
    cfg: RunConfig, mixing_matrix: np.ndarray, node_ids: Mapping[int, int], edges: Iterable[tuple[int, int]] = ()
) -> fl.Strategy:
    """The strategy named by ``cfg.strategy``, for the nodes ``node_ids`` (partition-id -> Flower node id).

    ``edges`` are the topology's (``random-matching`` draws its pairs among them).
    """
    return builder(cfg.strategy)(cfg, mixing_matrix, node_ids, edges)
