"""Submitting a run: ``flwr run --stream`` of the app on a running SuperLink, and how the run ended (``flwr ls``).

:func:`run_app` is what ``flower-dl run`` and every cell group of a sweep
call, on the private SuperLink of :func:`flower_dl.launch.superlink.local_superlink`
or a :func:`flower_dl.launch.deployment.local_deployment`.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from flower_dl.launch import flwr_output, watchdog
from flower_dl.launch.app_files import stage_app
from flower_dl.launch.processes import PROG, bin_path, popen, stop_process_group
from flower_dl.launch.superlink import CONNECTION


def toml_value(value: Any) -> str:
    """A Python scalar as a TOML literal, as ``flwr run --run-config`` parses it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))


def overrides_arg(overrides: Mapping[str, Any]) -> str:
    """dict -> the ``--run-config`` string ``k=v k2="s"``."""
    return " ".join(f"{k}={toml_value(v)}" for k, v in overrides.items())


def run_status(run_id: str, env: dict[str, str]) -> str:
    """How a run ended, as ``flwr ls`` reports it (e.g. ``finished:completed``).

    ``flwr run``'s exit code does not say whether the ServerApp failed, so a
    run counts as done only on this status.

    Parameters
    ----------
    run_id : str
        The id ``flwr run`` printed.
    env : dict of str to str
        The environment naming the SuperLink (from :func:`~flower_dl.launch.superlink.local_superlink`).

    Returns
    -------
    str
        The status, followed by its details in parentheses when it is not
        ``finished:completed``; ``"unknown"`` if ``flwr ls`` did not answer.
    """
    proc = popen(
        [bin_path("flwr"), "ls", "--run-id", run_id, "--format", "json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, _ = proc.communicate(timeout=60)
    finally:
        stop_process_group(proc, timeout=5)  # at once if it exited; if not (timeout, Ctrl-C), now
    try:
        runs = json.loads(stdout).get("runs", [])
    except (json.JSONDecodeError, AttributeError):
        return "unknown"
    if not runs:
        return "unknown"
    status = str(runs[0].get("status", "unknown"))
    details = runs[0].get("status-details")
    return f"{status} ({details})" if details and status != "finished:completed" else status


def _needs_file(overrides: Mapping[str, Any]) -> bool:
    """Whether a value cannot pass as ``k="v"`` on the command line: flwr's parser ends a string at any quote."""
    return any(isinstance(v, str) and ('"' in v or "'" in v) for v in overrides.values())


def run_config_file(overrides: Mapping[str, Any], path: Path) -> Path:
    """Write ``overrides`` as the TOML file ``flwr run --run-config <file.toml>`` reads (any string passes)."""
    path.write_text("".join(f"{k} = {toml_value(v)}\n" for k, v in overrides.items()))
    return path


def _run_cmd(
    app_dir: Path,
    overrides: Mapping[str, Any],
    num_supernodes: int | None,
    cpus_per_node: int,
    gpus_per_node: float,
    config_file: Path | None = None,
) -> list[str]:
    """The ``flwr run`` command; the run config through ``config_file`` when a value needs it (:func:`_needs_file`)."""
    run_config = str(run_config_file(overrides, config_file)) if config_file else overrides_arg(overrides)
    cmd = [bin_path("flwr"), "run", str(app_dir), CONNECTION, "--stream", "--run-config", run_config]
    if num_supernodes is not None:
        fed = f"num-supernodes={num_supernodes} client-resources-num-cpus={cpus_per_node}"
        if gpus_per_node:
            fed += f" client-resources-num-gpus={gpus_per_node}"
        cmd += ["--federation-config", fed]
    return cmd


def run_app(
    app_dir: Path,
    overrides: Mapping[str, Any],
    env: dict[str, str],
    *,
    num_supernodes: int | None = None,
    cpus_per_node: int = 1,
    gpus_per_node: float = 0.0,
    on_line: Callable[[str], None] | None = None,
) -> tuple[int, str]:
    """``flwr run --stream`` one run on the private SuperLink and wait for it to end.

    The ``flwr`` child runs in its own process group and is stopped if this
    is interrupted (Ctrl-C, an exception in ``on_line``), so no run outlives
    its caller.

    Parameters
    ----------
    app_dir : pathlib.Path
        The app folder (holds ``pyproject.toml``).
    overrides : mapping of str to Any
        Run-config values passed as ``--run-config``.
    env : dict of str to str
        The environment naming the SuperLink (:func:`~flower_dl.launch.superlink.local_superlink` or
        :func:`~flower_dl.launch.deployment.local_deployment`).
    num_supernodes : int, optional
        Set: a simulation of that many nodes, ``cpus_per_node`` CPUs and
        ``gpus_per_node`` GPUs each. ``None``: a deployment (the nodes are
        SuperNodes).
    cpus_per_node, gpus_per_node
        Resources of each simulated node.
    on_line : callable, optional
        Sees the command line (prefixed ``flower-dl: ``) and then every output line.

    Returns
    -------
    tuple of (int, str)
        ``flwr``'s exit code and the run's :func:`run_status`
        (``"not started"`` when ``flwr`` printed no run id).
    """
    with (
        tempfile.TemporaryDirectory(prefix="flower-dl-app-") as staged,
        tempfile.TemporaryDirectory(prefix="flower-dl-config-") as config_dir,
    ):
        watchdog.register_dir(staged)
        watchdog.register_dir(config_dir)
        config_file = Path(config_dir) / "run-config.toml" if _needs_file(overrides) else None
        # flwr walks the whole folder it is given, a .venv in it included: give it only the app's files
        cmd = _run_cmd(
            stage_app(app_dir, Path(staged)), overrides, num_supernodes, cpus_per_node, gpus_per_node, config_file
        )
        if on_line is not None:
            on_line(f"{PROG}: {shlex.join(cmd)}  (the files of {app_dir} that go into the app bundle)\n")
        proc = popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        run_id = None
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                if on_line is not None:
                    on_line(line)
                run_id = flwr_output.run_id(line) or run_id
            rc = proc.wait()
        except BaseException:
            stop_process_group(proc, timeout=5)
            raise
    status = run_status(run_id, env) if run_id else "not started"
    return rc, status
