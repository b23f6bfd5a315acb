"""``python -m flower_dl.launch.ray_head``: the Ray head node started beside a simulation SuperLink.

It starts the cluster Flower's own ``ray.init()`` would start, the way
``ray.init()`` starts it (a head ``Node``: GCS, raylet, its agents, the
minimal dashboard, the log monitor; all CPUs and GPUs Ray detects, the memory
Ray resolves by default; no usage stats), with three differences:

* the GCS listens on the port given here, so that the SuperLink's environment
  can name it (``RAY_ADDRESS``) before Ray is up;
* no autoscaler monitor (one machine, nothing to scale);
* its own ``--temp-dir`` (``ray.init`` shares ``/tmp/ray``), which
  :class:`flower_dl.launch.superlink.RayHead` removes when it stops the head.

Why not ``ray start --head --block``: on a machine with few cores, importing
Ray's CLI (``ray.scripts.scripts``) and the Ray client server it always starts
(one more process importing Ray) compete with every other process of the
start-up (``benchmarks/bench_round_time.py --startup-only`` measures it).
Starting a head node in-process has no public API: ``Node`` and ``RayParams``
are Ray's private API, reached only through :func:`ray_private`, which names
Ray's version and the missing attribute if a Ray release moves them
(flwr[simulation] pins the Ray version, ``ray==2.55.1`` for flwr 1.42; a
unit test checks every name :func:`ray_private` serves). Everything else uses
Ray's public API: the node's address (``ray.util.get_node_ip_address``) and
the usage-stats switch (``RAY_USAGE_STATS_ENABLED=0``).

Prints :data:`READY` and the GCS address once the head is up; runs until
SIGTERM or SIGINT, then kills its Ray processes. Exits with code 1 if a Ray
process dies before that.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
from typing import Any

READY = "flower-dl: Ray head ready at"
RAY_PRIVATE = {
    "Node": "ray._private.node:Node",
    "RayParams": "ray._private.parameter:RayParams",
    "GlobalState": "ray._private.state:GlobalState",
    "GcsClientOptions": "ray._raylet:GcsClientOptions",
}
"""Every name of Ray's private API flower-dl uses (the head here; ``GlobalState``, ``GcsClientOptions``: the
tests' view of a cluster's GCS) -> ``module:attribute``."""


class RayPrivateAPIError(RuntimeError):
    """Ray no longer has a private name flower-dl uses (:data:`RAY_PRIVATE`)."""


def ray_private(name: str) -> Any:
    """``name`` of Ray's private API (:data:`RAY_PRIVATE`), the only way flower-dl reaches it.

    Raises
    ------
    RayPrivateAPIError
        Naming the installed Ray version and the missing ``module.attribute``,
        when a Ray release has moved or removed it.
    """
    import ray

    module_name, _, attribute = RAY_PRIVATE[name].partition(":")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as err:
        raise RayPrivateAPIError(
            f"Ray {ray.__version__} has no {module_name}.{attribute}, a private Ray API flower-dl uses "
            f"(it was written against the Ray version flwr pins, ray==2.55.1 for flwr 1.42): {err}"
        ) from err


def main(argv: list[str] | None = None) -> int:
    """Start the head node, print :data:`READY`, and run until SIGTERM or SIGINT (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m flower_dl.launch.ray_head", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True, help="GCS port (on 127.0.0.1)")
    parser.add_argument("--dashboard-agent-listen-port", type=int, required=True)
    parser.add_argument("--temp-dir", required=True, help="Ray's temp dir (sessions, sockets, logs)")
    args = parser.parse_args(argv)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # Ray's documented switch, read by every Ray process it starts
    from ray.util import get_node_ip_address

    node_class, params_class = ray_private("Node"), ray_private("RayParams")
    params = params_class(
        # what `ray start --node-ip-address 127.0.0.1` does: Ray's drivers and workers find
        # their raylet by this machine's address, which Ray resolves the loopback address to
        node_ip_address=get_node_ip_address(),
        gcs_server_port=args.port,
        dashboard_agent_listen_port=args.dashboard_agent_listen_port,
        include_dashboard=False,
        no_monitor=True,
        temp_dir=args.temp_dir,
    )
    node = node_class(params, head=True, shutdown_at_exit=False, spawn_reaper=False)
    print(READY, node.address, flush=True)
    code = 0
    while not stop.wait(0.5):
        dead = node.dead_processes()
        if dead:
            names = ", ".join(f"{kind} (exit code {proc.returncode})" for kind, proc in dead)
            print(f"flower-dl: Ray processes exited: {names}", file=sys.stderr, flush=True)
            code = 1
            break
    node.kill_all_processes(check_alive=False, allow_graceful=False)
    return code


if __name__ == "__main__":
    sys.exit(main())
