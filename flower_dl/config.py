"""The run config: defaults, types, validation, one frozen object.

Flower hands the apps ``context.run_config``, a flat dict with kebab-case keys
(defaults from ``[tool.flwr.app.config]`` in pyproject.toml, overridden by
``--run-config``). :meth:`RunConfig.from_run_config` reads it once, checks every
key's type and range, and returns a frozen :class:`RunConfig` with snake_case
attributes; everything below takes typed arguments, never the raw dict.

Every error is a :class:`ConfigError` whose message names the key, the value
and what is allowed.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from flower_dl import registry
from flower_dl.privacy.dp import check_central_values as check_central_dp_values
from flower_dl.privacy.dp import check_values as check_dp_values
from flower_dl.privacy.mechanisms import check_mechanism
from flower_dl.privacy.membership import check_mia_every, check_mia_reference_models, check_mia_samples
from flower_dl.topology import MIXINGS, STUDY_EDGES, TOPOLOGIES, check_topology
from flower_dl.topology.checks import check_gossip_steps, check_schedule
from flower_dl.topology.compression import check_compression

STRATEGY_NAMES: tuple[str, ...] = registry.STRATEGIES.names()
EXCHANGE_MODES: tuple[str, ...] = registry.EXCHANGE_MODES.names()
MODEL_NAMES: tuple[str, ...] = registry.MODELS.names()
"""The built-in names of ``strategy``, ``exchange-mode`` and ``model`` (:mod:`flower_dl.registry` holds them)."""


class ConfigError(ValueError):
    """A run-config value that is missing, of the wrong type, or out of range."""


@dataclass(frozen=True)
class RunConfig:
    """Validated run config (attribute ``x_y`` is run-config key ``x-y``)."""

    # topology
    num_nodes: int = 5
    topology: str = "edges"
    edges: str = STUDY_EDGES
    degree: int = 4
    edge_prob: float = 0.5
    mixing: str = "metropolis"
    # data
    dataset: str = "mnist-5k"
    data_dir: str = ""
    test_dir: str = ""
    partitioner: str = "digits-per-node"
    digits_per_node: int = 3
    dirichlet_alpha: float = 0.5
    image_size: int = 0
    image_column: str = "image"
    label_column: str = "label"
    # exchange phase
    share_ratio: float = 0.1
    exchange_mode: str = "broadcast"
    exchange_encryption: bool = True
    exchange_mechanism: str = "raw"
    exchange_noise: float = 0.1
    mixup_size: int = 4
    mia_samples: int = 200
    mia_reference_models: int = 1
    mia_every: int = 10
    # model and training
    model: str = "mlp"
    strategy: str = "decentralized"
    num_server_rounds: int = 10
    evaluate_every: int = 1
    evaluate_in_train: bool = True
    local_epochs: int = 3
    lr: float = 0.01
    momentum: float = 0.5
    batch_size: int = 64
    proximal_mu: float = 0.01
    dp_clip: float = 1.0
    dp_noise_multiplier: float = 0.0
    dp_delta: float = 1e-5
    central_dp_noise_multiplier: float = 0.0
    central_dp_clip: float = 1.0
    # decentralized gossip
    mixing_schedule: str = "static"
    gossip_steps: int = 1
    epidemic_peers: int = 2
    compression: str = "top-k"
    compression_ratio: float = 0.1
    qsgd_levels: int = 16
    choco_gamma: float = 1.0
    # run
    seed: int = 42
    node_wait_timeout: float = 120.0
    round_timeout: float = 3600.0
    results_dir: str = "results"
    run_name: str = ""
    sweep_cells: str = ""
    checkpoint_every: int = 1
    resume: bool = False

    def __post_init__(self) -> None:
        for f in fields(self):
            _check_type(f.name, getattr(self, f.name), f.type)
        _choice("topology", self.topology, TOPOLOGIES)
        _choice("mixing", self.mixing, MIXINGS)
        for reg, value in (
            (registry.DATASETS, self.dataset),
            (registry.PARTITIONERS, self.partitioner),
            (registry.MODELS, self.model),
            (registry.STRATEGIES, self.strategy),
            (registry.EXCHANGE_MODES, self.exchange_mode),
        ):
            try:
                reg.check(value)  # an import path (model, strategy) is imported here: refused before anything starts
            except registry.RegistryError as err:
                raise ConfigError(str(err)) from None
        _range("num-nodes", self.num_nodes, 2, None, "an integer >= 2")
        _range("degree", self.degree, 1, None, "an integer >= 1")
        _range("edge-prob", self.edge_prob, 0.0, 1.0, "a probability in [0, 1]")
        classes = registry.num_classes(self.dataset)
        if classes:
            _range("digits-per-node", self.digits_per_node, 1, classes, f"an integer in 1..{classes} ({self.dataset})")
        else:  # the data's own class count, checked by the node that loads it
            _range("digits-per-node", self.digits_per_node, 1, None, "an integer >= 1")
        _range("image-size", self.image_size, 0, None, "an integer >= 0 (pixels a side; 0: the data's own size)")
        _range("dirichlet-alpha", self.dirichlet_alpha, 0.0, None, "a number > 0", strict_low=True)
        _range("share-ratio", self.share_ratio, 0.0, 1.0, "a number in [0, 1]")
        _range("num-server-rounds", self.num_server_rounds, 1, None, "an integer >= 1")
        _range("local-epochs", self.local_epochs, 1, None, "an integer >= 1")
        _range("evaluate-every", self.evaluate_every, 1, None, "an integer >= 1 (the last round is always evaluated)")
        _range("lr", self.lr, 0.0, None, "a number > 0", strict_low=True)
        _range("momentum", self.momentum, 0.0, 1.0, "a number in [0, 1)", strict_high=True)
        _range("batch-size", self.batch_size, 1, None, "an integer >= 1")
        _range("proximal-mu", self.proximal_mu, 0.0, None, "a number >= 0")
        _range("seed", self.seed, 0, 2**32 - 1, "an integer in 0..4294967295")
        _range("node-wait-timeout", self.node_wait_timeout, 0.0, None, "a number of seconds > 0", strict_low=True)
        _range("round-timeout", self.round_timeout, 0.0, None, "a number of seconds > 0", strict_low=True)
        _range("checkpoint-every", self.checkpoint_every, 0, None, "an integer >= 0 (rounds; 0: no checkpoints)")
        if not self.results_dir:
            raise ConfigError("results-dir: '' is empty; allowed: a folder path")
        if "/" in self.run_name or self.run_name in (".", ".."):
            raise ConfigError(f"run-name: {self.run_name!r} is not a plain folder name (no '/')")
        check_topology(self.topology, self.num_nodes, edges=self.edges, degree=self.degree, prob=self.edge_prob)
        _range("choco-gamma", self.choco_gamma, 0.0, 1.0, "a number in (0, 1]", strict_low=True)
        try:
            check_schedule(self.mixing_schedule, self.num_nodes, self.epidemic_peers)
            check_gossip_steps(self.gossip_steps)
            check_compression(self.compression, self.compression_ratio, self.qsgd_levels)
            check_mechanism(self.exchange_mechanism, self.exchange_noise, self.mixup_size)
            check_mia_samples(self.mia_samples)
            check_mia_reference_models(self.mia_reference_models)
            check_mia_every(self.mia_every)
            check_dp_values(self.dp_clip, self.dp_noise_multiplier, self.dp_delta)
            check_central_dp_values(self.central_dp_noise_multiplier, self.central_dp_clip, self.strategy)
        except ValueError as err:
            raise ConfigError(str(err)) from None

    # ------------------------------------------------------------------ I/O
    @classmethod
    def from_run_config(cls, run_config: Mapping[str, Any]) -> RunConfig:
        """Build from a Flower run config (kebab-case keys); unknown keys are refused."""
        known = {f.name.replace("_", "-"): f.name for f in fields(cls)}
        unknown = sorted(set(run_config) - set(known))
        if unknown:
            raise ConfigError(f"{unknown[0]}: unknown run-config key; allowed keys: {', '.join(sorted(known))}")
        return cls(**{known[k]: v for k, v in run_config.items()})

    def to_run_config(self) -> dict[str, Any]:
        """The kebab-case dict form (what is stored beside the results)."""
        return {k.replace("_", "-"): v for k, v in dataclasses.asdict(self).items()}

    @functools.cached_property
    def cell_id(self) -> str:
        """Stable id of this config, output locations (``results-dir``, ``run-name``) ignored.

        A sweep's table names its cells by it (re-running skips the cells it
        holds), and a node keys its stored state by it, so that runs of two
        configs never share state.
        """
        return config_id(self.to_run_config())

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with some attributes changed (and validated again)."""
        return dataclasses.replace(self, **changes)


OUTPUT_KEYS: tuple[str, ...] = ("results-dir", "run-name", "sweep-cells", "checkpoint-every", "resume")
"""Keys that say where a run's results go and how they are kept (or which cells one Flower run runs), not
what it computes: left out of :func:`config_id` (a resumed run is the same cell) and of the results table."""


def config_id(run_config: Mapping[str, Any]) -> str:
    """Stable id of a run config: a hash of its keys and values, the :data:`OUTPUT_KEYS` left out."""
    canonical = {k: v for k, v in sorted(run_config.items()) if k not in OUTPUT_KEYS}
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()[:12]


SWEEP_FORMAT = 2
"""Version of what :func:`cells_value` writes (2: the cells inline, as differences from the run's config)."""


def cells_value(cells: Sequence[Mapping[str, Any]], run_config: Mapping[str, Any]) -> str:
    """The ``sweep-cells`` value for one Flower run of ``cells`` whose own run config is ``run_config``.

    JSON, each cell as its keys that differ from ``run_config``: small enough for a run config, and it
    travels in the run config itself, so it reaches a ServerApp on another machine as every value does.
    """
    diffs = [{k: v for k, v in c.items() if run_config.get(k) != v or k not in run_config} for c in cells]
    return json.dumps({"format": SWEEP_FORMAT, "cells": diffs}, separators=(",", ":"))


def load_cells(value: str, run_config: Mapping[str, Any]) -> list[RunConfig]:
    """The cells a ``sweep-cells`` value names, each validated; raises :class:`ConfigError` naming ``sweep-cells``."""
    try:
        data = json.loads(value)
    except ValueError as err:
        raise ConfigError(f"sweep-cells: {value[:60]!r}... is not JSON ({err})") from None
    if not isinstance(data, dict) or data.get("format") != SWEEP_FORMAT or not isinstance(data.get("cells"), list):
        raise ConfigError(f"sweep-cells: not a list of cells of format {SWEEP_FORMAT} (written by flower-dl sweep)")
    base = {k: v for k, v in run_config.items() if k != "sweep-cells"}
    return [RunConfig.from_run_config({**base, **c, "sweep-cells": ""}) for c in data["cells"]]


def defaults() -> dict[str, Any]:
    """Every key's default, kebab-case (pyproject.toml must agree; a test checks)."""
    return RunConfig().to_run_config()


# ------------------------------------------------------------------ checks
def _key(name: str) -> str:
    return name.replace("_", "-")


def _check_type(name: str, value: Any, type_name: Any) -> None:
    key = _key(name)
    type_name = str(type_name)
    if type_name == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: {value!r} is not an integer; allowed: an integer")
    elif type_name == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: {value!r} is not a number; allowed: a number")
        if not math.isfinite(value):
            raise ConfigError(f"{key}: {value!r} is not finite; allowed: a finite number")
    elif type_name == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: {value!r} is not a boolean; allowed: true or false")
    elif type_name == "str" and not isinstance(value, str):
        raise ConfigError(f"{key}: {value!r} is not a string; allowed: a string")


def _choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}: {value!r} is not a known {key}; allowed: {', '.join(allowed)}")


def _range(
    key: str,
    value: float,
    low: float | None,
    high: float | None,
    allowed: str,
    *,
    strict_low: bool = False,
    strict_high: bool = False,
) -> None:
    bad = (low is not None and (value < low or (strict_low and value == low))) or (
        high is not None and (value > high or (strict_high and value == high))
    )
    if bad:
        raise ConfigError(f"{key}: {value!r} is out of range; allowed: {allowed}")
