"""Scale benchmark: flower-dl's decentralized strategy with N nodes on a ring.

Usage::

    python benchmarks/bench_scale.py [--nodes 100 1000] [--rounds 3] [--json OUT.json] [--quick]

For each N, one simulation launched through the package's own path
(``flower_dl.processes.local_superlink`` + ``flower_dl.processes.launch``, as
``flower-dl run`` does: N simulated SuperNodes, 1 CPU each) with the run config

    num-nodes=N topology='ring' dataset='mnist-5k' partitioner='iid' model='mlp'
    strategy='decentralized' num-server-rounds=R local-epochs=1

(everything else at its default; ``node-wait-timeout`` raised to 600 s so that
a slow start of many nodes is not taken for a failure). ``mnist-5k`` holds
4,000 training images, so with 1,000 nodes each holds 4 (and, at share-ratio
0.1, sends none: floor(0.4) = 0); ``iid`` is used because the study's
``digits-per-node`` cannot give 1,000 nodes distinct data. What grows with N is
the framework's work (messages, per-node state, the server's (N, P) parameter
stack and the mixing), not the training.

Measured, as in ``bench_round_time.py``:

* wall time per round: Flower's "Strategy execution finished in X s" (timed
  inside the ServerApp, from just before round 1 to the end of round R) / R;
  a round is training on every node, mixing, and every node evaluating on
  the 1,000 test images. Per-round times from consecutive "[ROUND r/R]" line
  arrivals (resolution ~0.5 s) are printed and kept in the JSON.
* start-up: the private SuperLink (and the Ray head beside it) started ->
  "[ROUND 1/" line arrived (submitting the app, joining Ray, node discovery,
  data loading, the exchange phase); ``launch-to-round-1-s`` in the JSON
  leaves the SuperLink's start out.
* peak memory of the whole process tree: the summed RSS of every process of
  the run (SuperLink, ``flwr``, SuperExec, ServerApp, Ray and its ClientApp
  actors) sampled every 0.2 s from /proc (psutil is not needed; see
  ``_harness.py``), plus the summed PSS (which counts shared pages once,
  sampled every 2 s). The run must finish and its peak RSS stay under
  ``--mem-limit-gib`` (default 8): the script exits 1 otherwise. As a guard for
  the machine, a run whose tree passes ``--kill-above-gib`` (default 12) is
  stopped.

``--quick``: 20 nodes, 1 round: checks the script end to end.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import (
    APP_DIR,
    MIB,
    TreeMemorySampler,
    fmt,
    machine_info,
    print_table,
    progress_line,
    timed_simulation,
    wait_for_exit,
    warn_leftovers,
)
from flower_dl.cli import resolve_config

GIB = 1024 * MIB


def scale_overrides(num_nodes: int, rounds: int, results_dir: Path) -> dict[str, Any]:
    return {
        "num-nodes": num_nodes,
        "topology": "ring",
        "dataset": "mnist-5k",
        "partitioner": "iid",
        "model": "mlp",
        "strategy": "decentralized",
        "num-server-rounds": rounds,
        "local-epochs": 1,
        "node-wait-timeout": 600.0,
        "results-dir": str(results_dir),
        "run-name": f"bench-scale-{num_nodes}",
    }


def run_one(num_nodes: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """One N: the simulation, its timings and its peak memory."""
    overrides = scale_overrides(num_nodes, args.rounds, tmp / "results")
    cfg = resolve_config(APP_DIR, overrides)  # validates before anything starts
    kill_above = args.kill_above_gib * GIB
    killed: list[int] = []

    def guard(rss_total: int) -> None:  # runs in the sampler thread
        if kill_above > 0 and rss_total > kill_above and not killed:
            killed.append(rss_total)
            os.kill(os.getpid(), signal.SIGINT)  # launch() and local_superlink stop their processes

    def echo(line: str) -> None:
        if args.verbose or progress_line(line):
            sys.stdout.write("    | " + line)
            sys.stdout.flush()

    workdir = tmp / f"superlink-{num_nodes}"
    workdir.mkdir()
    sim = None
    with TreeMemorySampler(on_sample=guard) as mem:
        try:
            sim = timed_simulation(
                overrides, workdir, num_nodes=cfg.num_nodes, cpus_per_node=args.cpus_per_node, echo=echo
            )
        except KeyboardInterrupt:
            if not killed:
                raise
    teardown_s, leftovers = wait_for_exit(mem)
    out: dict[str, Any] = {
        "nodes": num_nodes,
        "rounds": args.rounds,
        **mem.figures(),
        "teardown-s": teardown_s,
        "processes-left-after-teardown": leftovers,
    }
    if killed:
        out.update(
            ok=False,
            error=f"stopped: process tree RSS {killed[0] / GIB:.2f} GiB > --kill-above-gib {args.kill_above_gib}",
        )
        return out
    assert sim is not None
    out.update(
        {
            "ok": sim.ok,
            "flwr-exit-code": sim.rc,
            "status": sim.status,
            "s-per-round": sim.strategy_s / args.rounds if sim.strategy_s is not None else None,
            "strategy-s": sim.strategy_s,
            "round-s-from-line-arrivals": sim.round_durations(),
            "startup-s": sim.startup_total_s,
            "launch-to-round-1-s": sim.startup_s,
            "superlink-start-s": sim.superlink_start_s,
            "launch-to-exit-s": sim.total_s,
        }
    )
    if not sim.ok:
        out["error"] = f"run failed (flwr exit code {sim.rc}, status {sim.status})"
        out["log-tail"] = sim.tail()
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[100, 1000], help="node counts (default: 100 1000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each run (default: 3)")
    parser.add_argument(
        "--cpus-per-node", type=int, default=1, help="CPUs per simulated node (default: 1, as flower-dl run)"
    )
    parser.add_argument(
        "--mem-limit-gib", type=float, default=8.0, help="peak RSS of the tree must stay below (default: 8)"
    )
    parser.add_argument(
        "--kill-above-gib", type=float, default=12.0, help="stop a run whose tree passes this; 0: never (default: 12)"
    )
    parser.add_argument("--json", help="write the figures to this JSON file")
    parser.add_argument("--verbose", "-v", action="store_true", help="echo the whole simulation output")
    parser.add_argument("--quick", action="store_true", help="20 nodes, 1 round: checks the script works")
    args = parser.parse_args(argv)
    if args.quick:
        args.nodes, args.rounds = [20], 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    machine = machine_info()
    print(
        f"ring of N nodes, mnist-5k iid, mlp, {args.rounds} round(s), 1 local epoch; "
        f"{machine['cpus']} CPUs, load {machine['loadavg']}",
        flush=True,
    )
    results = []
    with tempfile.TemporaryDirectory(prefix="flower-dl-bench-scale-") as tmp_name:
        for n in args.nodes:
            print(f"[{n} nodes] flower-dl simulation ...", flush=True)
            result = run_one(n, args, Path(tmp_name))
            result["under-limit"] = bool(result.get("ok")) and result["peak-rss-mib"] * MIB < args.mem_limit_gib * GIB
            if result.get("error"):
                print(f"[{n} nodes] ERROR: {result['error']}", flush=True)
                if result.get("log-tail"):
                    sys.stderr.write(result["log-tail"])
            results.append(result)
    machine["loadavg-end"] = [round(x, 2) for x in os.getloadavg()]

    print()
    header = (
        "nodes",
        "s/round",
        "start-up s",
        "launch->exit s",
        "peak RSS MiB",
        "peak PSS MiB",
        f"< {args.mem_limit_gib:g} GiB",
    )
    rows = [
        (
            str(r["nodes"]),
            fmt(r.get("s-per-round")),
            fmt(r.get("startup-s"), ".1f"),
            fmt(r.get("launch-to-exit-s"), ".1f"),
            fmt(r["peak-rss-mib"], ".0f"),
            fmt(r["peak-pss-mib"], ".0f"),
            "yes" if r["under-limit"] else "NO",
        )
        for r in results
    ]
    print_table(header, rows)
    for r in results:
        print(
            f"{r['nodes']} nodes: rounds from log lines {[round(x, 2) for x in r.get('round-s-from-line-arrivals', [])]}, "
            f"teardown {r['teardown-s']:.1f} s, largest processes "
            f"{[(p['name'], p['peak-rss-mib']) for p in r['largest-processes'][:3]]}"
        )
        warn_leftovers(f"{r['nodes']} nodes", r)

    if args.json:
        out = {
            "benchmark": "scale",
            "setting": {
                **scale_overrides(0, args.rounds, Path("-")),
                "num-nodes": args.nodes,
                "cpus-per-node": args.cpus_per_node,
                "mem-limit-gib": args.mem_limit_gib,
                "quick": args.quick,
            },
            "machine": machine,
            "results": results,
        }
        for key in ("results-dir", "run-name"):
            out["setting"].pop(key)
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
        print(f"figures written to {args.json}")
    return 0 if all(r["under-limit"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
