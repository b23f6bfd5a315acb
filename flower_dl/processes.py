"""Flower processes on this machine: a private simulation SuperLink, or a local deployment.

Both run on 127.0.0.1 only, on free ports chosen at run time, in their own
process groups, and are stopped on exit whatever happens (each is a context
manager). They yield the environment for the ``flwr`` CLI: a private
``FLWR_HOME`` whose ``config.toml`` names one connection, :data:`CONNECTION`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

CONNECTION = "flower-dl-local"


class ProcessError(RuntimeError):
    """A Flower process did not start."""


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    """Block until 127.0.0.1:``port`` accepts connections (or ``proc`` exits)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ProcessError(f"{Path(str(proc.args[0])).name} exited early with code {proc.returncode}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise ProcessError(f"nothing listened on 127.0.0.1:{port} within {timeout:g} s")


def stop_process_group(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL, the process group led by ``proc``."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # children that outlived their leader
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=timeout)


def bin_path(name: str) -> str:
    """An executable of this environment (beside the running Python), else from PATH."""
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else name


def flwr_env(workdir: Path, port: int) -> dict[str, str]:
    """Environment for ``flwr`` and Flower's processes: a private FLWR_HOME naming one connection."""
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
        # the SuperLink and SuperNodes start flower-superexec, flwr-serverapp, ... by name
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
    })
    return env


def _start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _startup_error(err: Exception, log: Path) -> ProcessError:
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    return ProcessError(f"{err}; its output ends with:\n{tail}")


def _superlink_cmd(workdir: Path, port: int, simulation: bool) -> list[str]:
    cmd = [
        bin_path("flower-superlink"), "--insecure", "--isolation", "subprocess",
        "--disable-runtime-dependency-installation",
        "--host", "127.0.0.1", "--port", str(port),  # Flower 1.42: one HTTP port for all APIs
        "--health-server-address", f"127.0.0.1:{free_port()}",
        "--database", str(workdir / "state.db"),
    ]
    return cmd + (["--simulation"] if simulation else [])


@contextlib.contextmanager
def local_superlink(workdir: Path, startup_timeout: float = 60.0) -> Iterator[dict[str, str]]:
    """A simulation-mode SuperLink on a free loopback port; yields the env for ``flwr``.

    It uses the installed environment (``--disable-runtime-dependency-installation``).
    """
    port = free_port()
    env = flwr_env(workdir, port)
    log = workdir / "superlink.log"
    proc = _start(_superlink_cmd(workdir, port, simulation=True), env, log)
    try:
        try:
            wait_for_port(port, startup_timeout, proc)
        except ProcessError as err:
            raise _startup_error(err, log) from err
        yield env
    finally:
        stop_process_group(proc)


@dataclass
class Deployment:
    """A running local deployment."""

    env: dict[str, str]
    superlink_address: str
    superlink: subprocess.Popen
    supernodes: dict[int, subprocess.Popen] = field(default_factory=dict)
    logs: Path | None = None

    def kill_supernode(self, index: int) -> None:
        """Kill SuperNode ``index`` (and its ClientApp processes) at once, as a crash would."""
        proc = self.supernodes[index]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


@contextlib.contextmanager
def local_deployment(
    workdir: Path,
    num_nodes: int,
    *,
    data_dir: str = "",
    partition_ids: list[int] | None = None,
    startup_timeout: float = 60.0,
) -> Iterator[Deployment]:
    """A deployment-mode SuperLink and ``num_nodes`` SuperNodes on 127.0.0.1.

    SuperNode ``i`` is started with ``--node-config "partition-id=i
    num-partitions=N"`` (plus ``data-dir`` if given). Insecure (no TLS):
    loopback only. Every process is stopped on exit. ``partition_ids``
    overrides which ids the SuperNodes get (to test a bad deployment).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = flwr_env(workdir, port)
    log = workdir / "superlink.log"
    superlink = _start(_superlink_cmd(workdir, port, simulation=False), env, log)
    dep = Deployment(env=env, superlink_address=f"127.0.0.1:{port}", superlink=superlink, logs=workdir)
    try:
        try:
            wait_for_port(port, startup_timeout, superlink)
        except ProcessError as err:
            raise _startup_error(err, log) from err
        for index, pid in enumerate(partition_ids if partition_ids is not None else range(num_nodes)):
            node_config = f"partition-id={pid} num-partitions={num_nodes}"
            if data_dir:
                node_config += f' data-dir="{data_dir}"'
            node_port = free_port()
            cmd = [
                bin_path("flower-supernode"), "--insecure", "--superlink", dep.superlink_address,
                "--node-config", node_config, "--isolation", "subprocess",
                "--host", "127.0.0.1", "--port", str(node_port),
                "--health-server-address", f"127.0.0.1:{free_port()}",
            ]
            node_log = workdir / f"supernode-{index}.log"
            dep.supernodes[index] = _start(cmd, env, node_log)
            try:
                wait_for_port(node_port, startup_timeout, dep.supernodes[index])
            except ProcessError as err:
                raise _startup_error(err, node_log) from err
        yield dep
    finally:
        for proc in dep.supernodes.values():
            stop_process_group(proc)
        stop_process_group(superlink)
