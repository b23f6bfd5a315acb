"""``python -m flower_dl.launch.ray_head``: the Ray head node started beside a simulation SuperLink.

It starts the cluster Flower's own ``ray.init()`` would start, the way
``ray.init()`` starts it (``ray._private.node.Node``: GCS, raylet, its agents,
the minimal dashboard, the log monitor; all CPUs and GPUs Ray detects; no
usage stats), with three differences:

* the GCS listens on the port given here, so that the SuperLink's environment
  can name it (``RAY_ADDRESS``) before Ray is up;
* no autoscaler monitor (one machine, nothing to scale);
* its own ``--temp-dir`` (``ray.init`` shares ``/tmp/ray``), which
  :class:`flower_dl.launch.processes.RayHead` removes when it stops the head.

Why not ``ray start --head --block``: on a machine with few cores, importing
Ray's CLI (``ray.scripts.scripts``) and the Ray client server it always starts
(one more process importing Ray) compete with every other process of the
start-up (``benchmarks/bench_round_time.py --startup-only`` measures it). ``ray._private`` is Ray's private API; flwr[simulation] pins the Ray
version (``ray==2.55.1`` for flwr 1.42), so it cannot change under us.

Prints :data:`READY` and the GCS address once the head is up; runs until
SIGTERM or SIGINT, then kills its Ray processes. Exits with code 1 if a Ray
process dies before that.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

READY = "flower-dl: Ray head ready at"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flower_dl.launch.ray_head", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True, help="GCS port (on 127.0.0.1)")
    parser.add_argument("--dashboard-agent-listen-port", type=int, required=True)
    parser.add_argument("--temp-dir", required=True, help="Ray's temp dir (sessions, sockets, logs)")
    args = parser.parse_args(argv)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    from ray._common.usage import usage_lib
    from ray._private import services, utils
    from ray._private.node import Node
    from ray._private.parameter import RayParams

    usage_lib.set_usage_stats_enabled_via_env_var(False)
    available = utils.estimate_available_memory()
    params = RayParams(
        # what `ray start --node-ip-address 127.0.0.1` does: Ray's drivers and workers find
        # their raylet by this machine's address, which Ray resolves the loopback address to
        node_ip_address=services.resolve_ip_for_localhost("127.0.0.1"),
        gcs_server_port=args.port,
        dashboard_agent_listen_port=args.dashboard_agent_listen_port,
        include_dashboard=False,
        no_monitor=True,
        temp_dir=args.temp_dir,
        available_memory_bytes=available,
        object_store_memory=utils.resolve_object_store_memory(available, None),
    )
    node = Node(params, head=True, shutdown_at_exit=False, spawn_reaper=False)
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
