"""A local deployment: a deployment-mode SuperLink and N SuperNodes on 127.0.0.1 (``flower-dl deploy-local``).

Every process runs in its own process group (:func:`~flower_dl.launch.processes.popen`)
and is stopped on exit whatever happens (:func:`local_deployment` is a context
manager); insecure on loopback, or with TLS and SuperNode authentication
(:mod:`flower_dl.launch.secure`). ``flwr run`` submits runs to it
(:func:`flower_dl.launch.submit.run_app`, or from another shell).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from flower_dl.launch.processes import (
    ProcessError,
    bin_path,
    free_port,
    start_logged,
    startup_error,
    stop_process_group,
    stop_process_groups,
    wait_for_port,
)
from flower_dl.launch.superlink import CONNECTION, flwr_env, superlink_cmd

if TYPE_CHECKING:
    from flower_dl.launch.secure import SecureFiles


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
    secure: SecureFiles | None = None,
    registered: Sequence[int] | None = None,
    node_ca: Mapping[int, Path] | None = None,
) -> Iterator[Deployment]:
    """A deployment-mode SuperLink and ``num_nodes`` SuperNodes on 127.0.0.1.

    SuperNode ``i`` is started with ``--node-config "partition-id=i
    num-partitions=N"`` (plus ``data-dir`` if given, its ``{partition-id}`` replaced by i). Insecure (no TLS):
    loopback only. Every process is stopped on exit. ``partition_ids``
    overrides which ids the SuperNodes get (to test a bad deployment).

    ``secure`` (the files :func:`flower_dl.launch.secure.write_secure_files` made):
    TLS on every connection, SuperNode authentication on the SuperLink, the
    public keys of the SuperNodes in ``registered`` (default: all) registered
    with ``flwr supernode register`` before any SuperNode starts, and each
    SuperNode given its flower-dl identity (``identity-key``, ``peer-keys``).
    ``node_ca`` gives some SuperNodes another CA certificate to trust (to
    test that they cannot connect). A SuperNode that cannot join is left
    running, retrying, as Flower's are: the run waits for it up to
    ``node-wait-timeout``.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = flwr_env(workdir, port, root_certificates=None if secure is None else secure.ca)
    log = workdir / "superlink.log"
    superlink = start_logged(superlink_cmd(workdir, port, simulation=False, secure=secure), env, log)
    dep = Deployment(env=env, superlink_address=f"127.0.0.1:{port}", superlink=superlink, logs=workdir)
    try:
        try:
            wait_for_port(port, startup_timeout, superlink)
        except ProcessError as err:
            raise startup_error(err, log) from err
        pids = list(partition_ids if partition_ids is not None else range(num_nodes))
        if secure is not None:
            for pid in pids if registered is None else registered:
                register_supernode(secure.auth_public(pid), env, timeout=startup_timeout)
        for index, pid in enumerate(pids):
            node_config = f"partition-id={pid} num-partitions={num_nodes}"
            if data_dir:  # a template names each SuperNode's own folder
                node_config += f' data-dir="{data_dir.replace("{partition-id}", str(pid))}"'
            if secure is None:
                tls = ["--insecure"]
            else:
                ca = (node_ca or {}).get(pid, secure.ca)
                tls = ["--root-certificates", str(ca), "--auth-supernode-private-key", str(secure.auth_key(pid))]
                node_config += f' identity-key="{secure.identity_key(pid)}" peer-keys="{secure.peer_keys}"'
            node_port = free_port()
            cmd = [
                bin_path("flower-supernode"),
                *tls,
                "--superlink",
                dep.superlink_address,
                "--node-config",
                node_config,
                "--isolation",
                "subprocess",
                "--host",
                "127.0.0.1",
                "--port",
                str(node_port),
                "--health-server-address",
                f"127.0.0.1:{free_port()}",
            ]
            node_log = workdir / f"supernode-{index}.log"
            dep.supernodes[index] = start_logged(cmd, env, node_log)
            refused = secure is not None and (
                pid in (node_ca or {}) or (registered is not None and pid not in registered)
            )
            if refused:
                continue  # expected not to join (a test of who is kept out): it may exit at once
            try:
                wait_for_port(node_port, startup_timeout, dep.supernodes[index])
            except ProcessError as err:
                raise startup_error(err, node_log) from err
        yield dep
    finally:
        stop_process_groups(list(dep.supernodes.values()))
        stop_process_group(superlink)


def register_supernode(public_key: Path, env: dict[str, str], timeout: float = 60.0) -> None:
    """``flwr supernode register``: let the SuperLink of ``env`` accept the SuperNode holding ``public_key``'s pair.

    Raises
    ------
    ProcessError
        With ``flwr``'s output if it did not register the key.
    """
    cmd = [bin_path("flwr"), "supernode", "register", str(public_key), CONNECTION]
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as err:
        raise ProcessError(f"{shlex.join(cmd)} did not finish within {timeout:g} s") from err
    if done.returncode != 0:
        said = (done.stdout + done.stderr).strip()[-1500:]
        raise ProcessError(f"{shlex.join(cmd)} failed (exit code {done.returncode}): {said}")
