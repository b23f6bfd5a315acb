"""The run config and the node config: one declarative schema, defaults, validation, frozen objects.

Flower hands the apps ``context.run_config``, a flat dict with kebab-case keys
(defaults from ``[tool.flwr.app.config]`` in pyproject.toml, overridden by
``--run-config``), and each node its ``context.node_config``. Each key is
declared once, as a field of :class:`RunConfig` or :class:`NodeConfig`: its
type, default, what it allows (bounds, or a registry's names) and a one-line
description (:mod:`flower_dl.config.schema`). From those declarations come the
checks (every error is a :class:`ConfigError` naming the key, the value and what
is allowed), the defaults (:func:`defaults`, which pyproject.toml must match)
and the tables of ``docs/configuration.md`` (:func:`reference_markdown`;
``python -m flower_dl.config --write`` rewrites them).

Layout: ``schema.py`` the declarations' machinery (pydantic), ``run.py`` the run
config, ``node.py`` the node config, ``reference.py`` the docs' tables.
Imports neither Flower nor torch, so that every node process checks its config cheaply.
"""

from __future__ import annotations

from flower_dl.config.node import NodeConfig
from flower_dl.config.reference import reference_markdown
from flower_dl.config.run import (
    EXCHANGE_MODES,
    MODEL_NAMES,
    OUTPUT_KEYS,
    STRATEGY_NAMES,
    SWEEP_FORMAT,
    RunConfig,
    cells_value,
    config_id,
    defaults,
    load_cells,
)
from flower_dl.config.schema import ConfigError

__all__ = [
    "EXCHANGE_MODES",
    "MODEL_NAMES",
    "OUTPUT_KEYS",
    "STRATEGY_NAMES",
    "SWEEP_FORMAT",
    "ConfigError",
    "NodeConfig",
    "RunConfig",
    "cells_value",
    "config_id",
    "defaults",
    "load_cells",
    "reference_markdown",
]
