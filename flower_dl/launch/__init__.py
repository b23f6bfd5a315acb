"""Launching: the ``flower-dl`` command, Flower and Ray processes, their watchdog, sweeps and secure deployments.

Nothing here runs inside the ServerApp or the ClientApp. The names below are
the launcher's API, what :mod:`flower_dl.launch.cli` and ``benchmarks/`` call:

* a private simulation SuperLink (:func:`local_superlink`) or a local
  deployment (:func:`local_deployment`, :class:`Deployment`), each a context
  manager that stops every process it started;
* one run of an app on it (:func:`run_app`), or a whole sweep of cells
  (:func:`run_sweep`, its :class:`Cell` s from :func:`sweep_cells`, the grid
  from :func:`parse_grid`);
* the app folder a command runs (:func:`app_folder`) and its resolved,
  validated config (:func:`resolve_config`, :func:`parse_overrides`);
* a command that stops as Ctrl-C does on SIGTERM and SIGHUP and leaves no
  process behind (:func:`stoppable`).

They are imported when first used (:pep:`562`), so that importing one module
of the package (:mod:`flower_dl.launch.flwr_output`, say) does not import the
launcher.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flower_dl.launch.app_location import app_folder
    from flower_dl.launch.checks import CliError, parse_overrides, resolve_config, sweep_cells
    from flower_dl.launch.deployment import Deployment, local_deployment
    from flower_dl.launch.grid import parse_grid
    from flower_dl.launch.processes import PROG, ProcessError, stoppable
    from flower_dl.launch.submit import run_app
    from flower_dl.launch.superlink import CONNECTION, RAY_HEAD_ENV, local_superlink
    from flower_dl.launch.sweep import Cell, CellResult, run_sweep

_API = {
    "app_folder": "app_location",
    "CliError": "checks",
    "parse_overrides": "checks",
    "resolve_config": "checks",
    "sweep_cells": "checks",
    "Deployment": "deployment",
    "local_deployment": "deployment",
    "PROG": "processes",
    "ProcessError": "processes",
    "stoppable": "processes",
    "run_app": "submit",
    "CONNECTION": "superlink",
    "RAY_HEAD_ENV": "superlink",
    "local_superlink": "superlink",
    "run_sweep": "sweep",
    "Cell": "sweep",
    "CellResult": "sweep",
    "parse_grid": "grid",
}
"""Public name -> the module of this package that defines it."""

__all__ = [
    "CONNECTION",
    "PROG",
    "RAY_HEAD_ENV",
    "Cell",
    "CellResult",
    "CliError",
    "Deployment",
    "ProcessError",
    "app_folder",
    "local_deployment",
    "local_superlink",
    "parse_grid",
    "parse_overrides",
    "resolve_config",
    "run_app",
    "run_sweep",
    "stoppable",
    "sweep_cells",
]


def __getattr__(name: str) -> Any:
    """A public name (:data:`_API`), imported from its module on first use."""
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
