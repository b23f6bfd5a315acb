"""The ``flower-dl`` command.

``flower-dl run``    one simulation through ``flwr run`` (the same code path), against
                     the installed environment, on a private SuperLink that it starts
                     on free loopback ports and always stops; exits non-zero when the
                     run fails.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

PROG = "flower-dl"
CONNECTION = "flower-dl-local"


class CliError(Exception):
    """An error reported to the user as ``flower-dl: error: ...`` (exit 2)."""


# ------------------------------------------------------------------- config
def parse_overrides(items: Sequence[str] | None) -> dict[str, Any]:
    """``--run-config`` values (``"k=v k2='s'"`` or one ``.toml`` file) -> dict."""
    from flwr.common.config import parse_config_args

    try:
        return parse_config_args(list(items) if items else None)
    except Exception as err:  # click.ClickException, ValueError, TOMLDecodeError
        msg = getattr(err, "message", None) or str(err)
        raise CliError(f"--run-config: {msg}") from err


def resolve_config(app_dir: Path, overrides: dict[str, Any]):
    """Defaults of the app's pyproject.toml fused with ``overrides``, validated.

    Returns the :class:`~flower_dl.config.RunConfig`; raises :class:`CliError`
    naming the key, the value and what is allowed. The topology is built too,
    so a bad graph fails here, before anything starts.
    """
    from flwr.common.config import get_fused_config_from_dir

    from flower_dl.config import RunConfig
    from flower_dl.server_app import build_topology

    if not (app_dir / "pyproject.toml").is_file():
        raise CliError(f"app: {str(app_dir)!r} holds no pyproject.toml (run from the flower-dl app folder)")
    try:
        fused = get_fused_config_from_dir(app_dir, overrides)
    except ValueError as err:
        raise CliError(f"--run-config: {err}") from err
    try:
        cfg = RunConfig.from_run_config(fused)
        build_topology(cfg)
    except ValueError as err:
        raise CliError(str(err)) from err
    return cfg


def toml_value(value: Any) -> str:
    """A Python scalar as a TOML literal (for ``--run-config``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))


def overrides_arg(overrides: dict[str, Any]) -> str:
    """dict -> the ``--run-config`` string ``k=v k2="s"``."""
    return " ".join(f"{k}={toml_value(v)}" for k, v in overrides.items())


# ---------------------------------------------------------------- superlink
def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    """Block until 127.0.0.1:``port`` accepts connections."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise CliError(f"the SuperLink exited early with code {proc.returncode}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise CliError(f"the SuperLink did not open 127.0.0.1:{port} within {timeout:g} s")


def stop_process_group(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL, the process group led by ``proc``."""
    if proc.poll() is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=timeout)


@contextlib.contextmanager
def local_superlink(workdir: Path, startup_timeout: float = 60.0) -> Iterator[dict[str, str]]:
    """Start a simulation-mode SuperLink on free loopback ports; yield the env for ``flwr``.

    The SuperLink uses the installed environment
    (``--disable-runtime-dependency-installation``) and runs in its own
    process group, which is stopped on exit, whatever happens.
    """
    port = free_port()  # Flower 1.42: Control, Runtime (and Fleet) APIs share one HTTP port
    flwr_home = workdir / "flwr-home"
    flwr_home.mkdir(parents=True, exist_ok=True)
    (flwr_home / "config.toml").write_text(
        f'[superlink]\ndefault = "{CONNECTION}"\n\n'
        f'[superlink.{CONNECTION}]\naddress = "127.0.0.1:{port}"\ninsecure = true\n'
    )
    env = os.environ.copy()
    env.update({
        "FLWR_HOME": str(flwr_home),
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "PYTHONUNBUFFERED": "1",
        # the SuperLink starts flower-superexec, flwr-serverapp, ... by name
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
    })
    cmd = [
        _bin("flower-superlink"), "--insecure", "--simulation", "--isolation", "subprocess",
        "--disable-runtime-dependency-installation",
        "--host", "127.0.0.1", "--port", str(port),
        "--health-server-address", f"127.0.0.1:{free_port()}",
        "--database", str(workdir / "state.db"),
        "--log-file", str(workdir / "superlink.log"),
    ]
    with open(workdir / "superlink.out", "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        try:
            wait_for_port(port, startup_timeout, proc)
        except CliError as err:
            log = (workdir / "superlink.out").read_text(errors="replace")[-2000:]
            raise CliError(f"{err}; its output ends with:\n{log}") from err
        yield env
    finally:
        stop_process_group(proc)


def _bin(name: str) -> str:
    """An executable of this environment (beside the running Python), else from PATH."""
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else name


# --------------------------------------------------------------------- run
RUN_ID = re.compile(r"Successfully started run (\d+)")


def run_status(run_id: str, env: dict[str, str]) -> str:
    """The run's status as ``flwr ls`` reports it (e.g. ``finished:completed``)."""
    out = subprocess.run(
        [_bin("flwr"), "ls", "--run-id", run_id, "--format", "json"],
        env=env, capture_output=True, text=True, timeout=60,
    )
    try:
        data = json.loads(out.stdout)
        runs = data.get("runs", [])
        return str(runs[0].get("status", "unknown")) if runs else "unknown"
    except (json.JSONDecodeError, AttributeError, IndexError):
        return "unknown"


def cmd_run(args: argparse.Namespace) -> int:
    """``flower-dl run``: one simulation, results in ``results-dir``."""
    app_dir = Path(args.app).resolve()
    overrides = parse_overrides(args.run_config)
    cfg = resolve_config(app_dir, overrides)
    overrides["results-dir"] = str(Path(cfg.results_dir).expanduser().resolve())
    num_supernodes = args.num_supernodes or cfg.num_nodes
    if num_supernodes != cfg.num_nodes:
        raise CliError(f"--num-supernodes: {num_supernodes} differs from num-nodes = {cfg.num_nodes}; they must be equal")
    fed = f"num-supernodes={num_supernodes} client-resources-num-cpus={args.cpus_per_node}"
    with tempfile.TemporaryDirectory(prefix="flower-dl-") as tmp, local_superlink(Path(tmp)) as env:
        cmd = [
            _bin("flwr"), "run", str(app_dir), CONNECTION, "--stream",
            "--run-config", overrides_arg(overrides), "--federation-config", fed,
        ]
        print(f"{PROG}: {shlex.join(cmd)}", flush=True)
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        run_id = None
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            match = RUN_ID.search(line)
            if match:
                run_id = match.group(1)
        sys.stdout.flush()
        rc = proc.wait()
        status = run_status(run_id, env) if run_id else "not started"
    if rc != 0 or status != "finished:completed":
        print(f"{PROG}: error: the run did not complete (flwr exit code {rc}, status {status})", file=sys.stderr)
        return 1
    return 0


# -------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Decentralized learning with data exchange on Flower.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one simulation (flwr run on a private local SuperLink)")
    run.add_argument("app", nargs="?", default=".", help="the flower-dl app folder (default: .)")
    run.add_argument(
        "--run-config", "-c", action="append",
        help="override run-config values: 'k1=v1 k2=\"s\"' (TOML values) or a .toml file; repeatable",
    )
    run.add_argument("--num-supernodes", type=int, default=None, help="simulated nodes (default: num-nodes)")
    run.add_argument("--cpus-per-node", type=int, default=1, help="CPUs per simulated node (default: 1)")
    run.set_defaults(func=cmd_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``flower-dl`` command."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CliError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
