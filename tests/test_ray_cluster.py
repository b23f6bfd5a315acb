"""A Ray cluster of two nodes: ``flower-dl run`` joins it through ``RAY_ADDRESS`` and places node actors on both.

Two Ray nodes on 127.0.0.1, one CPU each (``ray start --head`` and ``ray start
--address``, every port free, a private temp dir), and a simulation of 4
flower-dl nodes with 1 CPU each: Flower's actor pool then holds one
``ClientAppActor`` per Ray node, and the GCS's actor table says on which node
each ran. ``ray start`` daemonizes: the Ray processes are found by the
session of the ``ray start`` command that started them (and their
descendants) and killed by PID, never with ``ray stop``, which would stop
every Ray cluster on the machine. Linux only (reads ``/proc``).
"""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from flower_dl.launch.processes import bin_path, free_port, wait_for_port
from flower_dl.launch.ray_head import ray_private

from .conftest import run_cli

pytestmark = pytest.mark.e2e
pytest.importorskip("ray", reason="needs Ray (pip install 'flwr[simulation]')")

CONFIG = "num-nodes=4 topology='ring' num-server-rounds=1 local-epochs=1 run-name='cluster'"


def _ray_start(temp_dir: Path, *args: str) -> subprocess.Popen:
    """``ray start`` for a 1-CPU node on 127.0.0.1, a free port for each port Ray would otherwise fix.

    Its own session (``start_new_session``): every Ray process it leaves behind
    inherits that session id, which is how :func:`_processes` finds them.
    Worker ports come from Ray's range, which Ray checks before use.
    """
    cmd = [
        bin_path("ray"),
        "start",
        *args,
        "--node-ip-address",
        "127.0.0.1",
        "--num-cpus",
        "1",
        "--num-gpus",
        "0",
        "--object-store-memory",
        str(256 * 2**20),
        "--object-manager-port",
        str(free_port()),
        "--node-manager-port",
        str(free_port()),
        "--dashboard-agent-listen-port",
        str(free_port()),
        "--dashboard-agent-grpc-port",
        str(free_port()),
        "--runtime-env-agent-port",
        str(free_port()),
        "--metrics-export-port",
        str(free_port()),
        "--include-log-monitor",
        "false",  # forwards actors' output to the driver: not needed, one process less per node
        "--disable-usage-stats",
        "--temp-dir",
        str(temp_dir),  # short: Ray's unix sockets live there (at most 107 bytes a path)
    ]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env["RAY_prestart_worker_first_driver"] = "0"  # as flower-dl's own head: such workers would go unused
    with open(temp_dir.parent / f"{temp_dir.name}.log", "wb") as log:
        return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _processes(sessions: set[int]) -> dict[int, str]:
    """PID -> state of every process in ``sessions`` and of their descendants (Linux ``/proc``)."""
    table: dict[int, tuple[int, int, str]] = {}  # pid -> (ppid, session, state)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            table[int(stat.parent.name)] = (int(fields[1]), int(fields[3]), fields[0])
    found = {pid for pid, (_, sid, _) in table.items() if sid in sessions}
    while True:
        children = {pid for pid, (ppid, _, _) in table.items() if ppid in found} - found
        if not children:
            return {pid: table[pid][2] for pid in found}
        found |= children


def _stop(sessions: set[int], timeout: float = 15.0) -> dict[int, str]:
    """SIGKILL every process of ``sessions`` (and descendants) by PID; return those still there after ``timeout``.

    Zombies are waited for (PID 1 reaps the daemonized ones), but do not count:
    they hold no resources.
    """
    deadline = time.monotonic() + timeout
    while (left := _processes(sessions)) and time.monotonic() < deadline:
        for pid, state in left.items():
            if state != "Z":
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    return {pid: state for pid, state in _processes(sessions).items() if state != "Z"}


def _gcs(address: str):
    """Ray's view of the cluster, read from its GCS without joining it as a driver.

    ``ray.util.state`` would need the head's dashboard; this is what
    ``ray._private.state.actors()`` reads after ``ray.init`` (private API,
    reached through :func:`flower_dl.launch.ray_head.ray_private`).
    """
    state = ray_private("GlobalState")()
    state._initialize_global_state(
        ray_private("GcsClientOptions").create(address, None, allow_cluster_id_nil=True, fetch_cluster_id_if_nil=True)
    )
    return state


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_a_simulation_places_its_node_actors_on_both_nodes_of_a_ray_cluster(tmp_path) -> None:
    root = Path(tempfile.mkdtemp(prefix="fdl-rc-", dir="/tmp"))
    port = free_port()
    address = f"127.0.0.1:{port}"
    starts: list[subprocess.Popen] = []
    try:
        starts.append(
            _ray_start(
                root / "head",
                "--head",
                "--port",
                str(port),
                "--ray-client-server-port",
                str(free_port()),
                "--include-dashboard",
                "false",
                "--dashboard-port",
                str(free_port()),
            )
        )
        wait_for_port(port, 120, starts[0])  # the GCS: the second node can join while the head finishes starting
        starts.append(_ray_start(root / "worker", "--address", address))
        for proc, name in zip(starts, ("head", "worker")):
            assert proc.wait(timeout=120) == 0, (root / f"{name}.log").read_text()

        gcs = _gcs(address)
        deadline = time.monotonic() + 60
        while len(nodes := [n for n in gcs.node_table() if n["Alive"]]) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(nodes) == 2 and all(n["Resources"].get("CPU") == 1 for n in nodes), nodes

        start = time.monotonic()
        proc = run_cli(
            "run",
            "--cpus-per-node",
            "1",
            "-c",
            f"{CONFIG} results-dir='{tmp_path}'",
            env={"RAY_ADDRESS": address},
            timeout=300,
        )
        print(f"flower-dl run on the 2-node cluster: {time.monotonic() - start:.1f} s")
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        with open(tmp_path / "cluster" / "metrics.csv") as table:
            assert {row["node"] for row in csv.DictReader(table)} == {"0", "1", "2", "3"}
        assert (tmp_path / "cluster" / "summary.json").exists()

        actors = [a for a in gcs.actor_table(None).values() if a["ActorClassName"] == "ClientAppActor"]
        gcs.disconnect()
        assert len(actors) == 2, actors  # one per 1-CPU Ray node: Flower sizes its pool per node
        assert {a["Address"]["NodeID"] for a in actors} == {n["NodeID"] for n in nodes}
    finally:
        for proc in starts:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()  # a `ray start` still starting
            proc.wait(timeout=30)
        left = _stop({proc.pid for proc in starts})
        shutil.rmtree(root, ignore_errors=True)
    assert not left, f"Ray processes left: {left}"
    assert not _listening(port)
