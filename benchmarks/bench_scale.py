"""Scale benchmark: flower-dl's decentralized strategy with N nodes on a ring, against Flower's own floor.

Usage::

    python benchmarks/bench_scale.py [--nodes 100 1000] [--rounds 3] [--json OUT.json] [--quick]

For each N, two simulations, one after the other, both launched through the
package's own path (``flower_dl.launch.local_superlink`` +
``flower_dl.launch.run_app``, as ``flower-dl run`` does: a private SuperLink
and Ray head, N simulated SuperNodes, ``--cpus-per-node`` CPUs each), with the
same memory sampler and the same wait for the run's processes to exit:

1. **flower-dl**, with the run config

       num-nodes=N topology='ring' dataset='mnist-5k' partitioner='iid' model='mlp'
       strategy='decentralized' num-server-rounds=R local-epochs=1

   (everything else at its default; ``node-wait-timeout`` raised to 600 s so
   that a slow start of many nodes is not taken for a failure). ``mnist-5k``
   holds 4,000 training images, so with 1,000 nodes each holds 4 (and, at
   share-ratio 0.1, sends none: floor(0.4) = 0); ``iid`` is used because the
   study's ``digits-per-node`` cannot give 1,000 nodes distinct data. What
   grows with N is the framework's work (messages, per-node state, the
   server's (N, P) parameter stack and the mixing), not the training.
2. **the floor** (``benchmarks/floor_app/``): a minimal Flower ServerApp and
   ClientApp, no flower-dl code, no training, no torch. Its ServerApp waits
   for the N nodes, sends each one empty ``query`` (a warm-up wave, as
   flower-dl's node discovery is one), then each round sends every node one
   ``train`` message holding its own copy of a model of flower-dl's MLP's size
   (784x200 + 200 + 200x10 + 10 = 159,010 float32, :data:`MLP_FLOATS`) and
   gets the same bytes back. flower-dl also sends one message per node per
   round: a node evaluates round r's model at the start of round r + 1's
   ``train`` message, and only the last round is followed by an ``evaluate``
   message. The floor is what Flower itself costs to move the model to N
   nodes and back; flower-dl's time over it is its own (training, mixing,
   bookkeeping) overhead.

Measured for each, as in ``bench_round_time.py``:

* wall time per round: "Strategy execution finished in X s" (timed inside the
  ServerApp, from just before round 1 to the end of round R; the floor logs
  it the way Flower's ``Strategy.start`` does) / R, and flower-dl's over the
  floor's. Per-round times from consecutive "[ROUND r/R]" line arrivals
  (resolution ~0.5 s) are printed and kept in the JSON.
* start-up: the private SuperLink (and the Ray head beside it) started ->
  "[ROUND 1/" line arrived (submitting the app, joining Ray, node discovery,
  and, for flower-dl, data loading and the exchange phase);
  ``launch-to-round-1-s`` in the JSON leaves the SuperLink's start out. The
  floor's start-up is Flower's own part of flower-dl's at that N.
* peak memory of the whole process tree: the summed RSS of every process of
  the run (SuperLink, ``flwr``, SuperExec, ServerApp, Ray and its ClientApp
  actors) sampled every 0.2 s through psutil (see
  ``_harness.py``), plus the summed PSS (which counts shared pages once,
  sampled every 2 s).

Targets, for flower-dl at 1,000 nodes on the ring (printed as yes/NO at every
N): s/round <= :data:`TARGET_RATIO` (1.2) x the floor's, and peak RSS of the
whole run <= :data:`TARGET_RSS_GIB` (6 GiB). Every run must finish and
flower-dl's peak RSS stay under ``--mem-limit-gib`` (default 8): the script
exits 1 otherwise. As a guard for the machine, a run whose tree passes
``--kill-above-gib`` (default 12) is stopped.

``--quick``: 20 nodes, 1 round, both apps: checks the script end to end.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import (
    APP_DIR,
    FLOOR_APP_DIR,
    MIB,
    SimulationTiming,
    TreeMemorySampler,
    fmt,
    machine_info,
    print_table,
    progress_line,
    timed_simulation,
    wait_for_exit,
    warn_leftovers,
)
from flower_dl.launch import resolve_config

GIB = 1024 * MIB
FLOWER_DL, FLOOR = "flower-dl", "floor"
APPS = (FLOWER_DL, FLOOR)
"""The two runs of each N, in the order they run."""
MLP_SHAPES = ((784, 200), (200,), (200, 10), (10,))
"""flower-dl's ``mlp``: its parameters' shapes (written out here: the floor imports no flower-dl)."""
MLP_FLOATS = sum(math.prod(shape) for shape in MLP_SHAPES)
"""159,010: the float32 the floor sends each node and gets back each round."""
TARGET_RATIO = 1.2
"""flower-dl's s/round over the floor's, at most (at 1,000 nodes)."""
TARGET_RSS_GIB = 6.0
"""flower-dl's peak RSS of the whole run, at most, in GiB (at 1,000 nodes)."""


def scale_overrides(num_nodes: int, rounds: int, results_dir: Path) -> dict[str, Any]:
    """flower-dl's run config at ``num_nodes`` nodes (see the module docstring)."""
    return {
        "num-nodes": num_nodes,
        "topology": "ring",
        "dataset": "mnist-5k",
        "partitioner": "iid",
        "model": "mlp",
        "strategy": "decentralized",
        "num-server-rounds": rounds,
        "local-epochs": 1,
        "mia-samples": 0,  # 4 samples a node at 1,000 nodes: too few to attack (bench_mia.py measures the attack)
        "node-wait-timeout": 600.0,
        "results-dir": str(results_dir),
        "run-name": f"bench-scale-{num_nodes}",
    }


def floor_overrides(num_nodes: int, rounds: int) -> dict[str, Any]:
    """The floor app's run config: the same N and rounds, flower-dl's MLP's size."""
    return {"num-nodes": num_nodes, "num-server-rounds": rounds, "num-floats": MLP_FLOATS, "node-wait-timeout": 600.0}


def memory_guard(kill_above: float, killed: list[int]) -> Callable[[int], None]:
    """The sampler's callback: past ``kill_above`` bytes (0: never), note the RSS in ``killed`` and stop the run."""

    def guard(rss_total: int) -> None:  # runs in the sampler thread
        if kill_above > 0 and rss_total > kill_above and not killed:
            killed.append(rss_total)
            os.kill(os.getpid(), signal.SIGINT)  # run_app() and local_superlink stop their processes

    return guard


def echo_progress(app: str, verbose: bool) -> Callable[[str], None]:
    """Echo the simulation's round and strategy lines (every line if ``verbose``), prefixed with ``app``."""

    def echo(line: str) -> None:
        if verbose or progress_line(line):
            sys.stdout.write(f"    {app} | " + line)
            sys.stdout.flush()

    return echo


def simulation_figures(sim: SimulationTiming, rounds: int) -> dict[str, Any]:
    """A finished (or failed) run's outcome and timings; its log's tail if it failed."""
    out: dict[str, Any] = {
        "ok": sim.ok,
        "flwr-exit-code": sim.rc,
        "status": sim.status,
        "s-per-round": sim.strategy_s / rounds if sim.strategy_s is not None else None,
        "strategy-s": sim.strategy_s,
        "round-s-from-line-arrivals": sim.round_durations(),
        "startup-s": sim.startup_total_s,
        "launch-to-round-1-s": sim.startup_s,
        "superlink-start-s": sim.superlink_start_s,
        "launch-to-exit-s": sim.total_s,
    }
    if not sim.ok:
        out["error"] = f"run failed (flwr exit code {sim.rc}, status {sim.status})"
        out["log-tail"] = sim.tail()
    return out


def app_run(app: str, num_nodes: int, rounds: int, tmp: Path) -> tuple[Path, dict[str, Any]]:
    """The app folder and run config of ``app`` (:data:`FLOWER_DL` or :data:`FLOOR`) at ``num_nodes`` nodes.

    flower-dl's config is validated here, so that a bad one fails before anything starts.
    """
    if app == FLOOR:
        return FLOOR_APP_DIR, floor_overrides(num_nodes, rounds)
    overrides = scale_overrides(num_nodes, rounds, tmp / "results")
    resolve_config(APP_DIR, overrides)
    return APP_DIR, overrides


def run_one(app: str, num_nodes: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """One simulation of ``app`` at ``num_nodes`` nodes: its timings and its peak memory.

    Parameters
    ----------
    app : str
        :data:`FLOWER_DL` or :data:`FLOOR`.
    num_nodes : int
        Simulated nodes.
    args : argparse.Namespace
        ``rounds``, ``cpus_per_node``, ``kill_above_gib``, ``verbose`` (see :func:`parse_args`).
    tmp : pathlib.Path
        Folder for the run's SuperLink (and flower-dl's results).

    Returns
    -------
    dict
        ``app``, memory figures (:meth:`TreeMemorySampler.figures`), teardown,
        then :func:`simulation_figures`, or ``ok=False`` and ``error`` if the
        run was stopped by the memory guard.
    """
    app_dir, overrides = app_run(app, num_nodes, args.rounds, tmp)
    killed: list[int] = []
    workdir = tmp / f"superlink-{app}-{num_nodes}"
    workdir.mkdir()
    sim = None
    with TreeMemorySampler(on_sample=memory_guard(args.kill_above_gib * GIB, killed)) as mem:
        try:
            sim = timed_simulation(
                overrides, workdir, num_nodes=num_nodes, cpus_per_node=args.cpus_per_node,
                echo=echo_progress(app, args.verbose), app_dir=app_dir,
            )  # fmt: skip
        except KeyboardInterrupt:
            if not killed:
                raise
    teardown_s, leftovers = wait_for_exit(mem)
    out: dict[str, Any] = {"app": app, **mem.figures(), "teardown-s": teardown_s}
    out["processes-left-after-teardown"] = leftovers
    if killed:
        reason = f"process tree RSS {killed[0] / GIB:.2f} GiB > --kill-above-gib {args.kill_above_gib}"
        out.update(ok=False, error=f"stopped: {reason}")
        return out
    assert sim is not None
    out.update(simulation_figures(sim, args.rounds))
    return out


def compare(dl: dict[str, Any], floor: dict[str, Any], mem_limit_gib: float, rounds: int) -> dict[str, Any]:
    """flower-dl's figures against the floor's and the targets.

    Returns
    -------
    dict
        ``ratio-s-per-round`` (flower-dl's s/round over the floor's; ``None``
        if either failed), ``ratio-s-per-wave`` (the same per wave of one
        message to every node: flower-dl sends ``rounds + 1``, its rounds'
        ``train`` messages and the evaluation after the last round, the floor
        ``rounds``), ``flower-startup-s`` (the floor's start-up: Flower's
        own part of flower-dl's), ``flower-dl-own-startup-s`` (the rest),
        ``meets-ratio-target``,
        ``meets-memory-target`` and ``under-limit`` (both runs finished and
        flower-dl's peak RSS is below ``mem_limit_gib``).
    """
    ok = bool(dl.get("ok")) and bool(floor.get("ok"))
    ratio = dl["s-per-round"] / floor["s-per-round"] if ok and floor["s-per-round"] else None
    per_wave = None if ratio is None else ratio * rounds / (rounds + 1)
    rss_ok = bool(dl.get("ok")) and dl["peak-rss-mib"] * MIB <= TARGET_RSS_GIB * GIB
    startups = dl.get("startup-s"), floor.get("startup-s")
    return {
        "ratio-s-per-round": ratio,
        "ratio-s-per-wave": per_wave,
        "flower-startup-s": startups[1],
        "flower-dl-own-startup-s": None if None in startups else startups[0] - startups[1],
        "meets-ratio-target": ratio is not None and ratio <= TARGET_RATIO,
        "meets-memory-target": rss_ok,
        "under-limit": ok and dl["peak-rss-mib"] * MIB < mem_limit_gib * GIB,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (``--quick``: 20 nodes, 1 round)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[100, 1000], help="node counts (default: 100 1000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each run (default: 3)")
    parser.add_argument(
        "--cpus-per-node", type=int, default=1, help="CPUs per simulated node (default: 1, as flower-dl run)"
    )
    parser.add_argument(
        "--mem-limit-gib", type=float, default=8.0, help="flower-dl's peak RSS must stay below (default: 8)"
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


def run_all(args: argparse.Namespace) -> list[dict[str, Any]]:
    """For each ``--nodes``: :func:`run_one` of each app, then :func:`compare`, in a temporary folder."""
    results = []
    with tempfile.TemporaryDirectory(prefix="flower-dl-bench-scale-") as tmp_name:
        for n in args.nodes:
            result: dict[str, Any] = {"nodes": n, "rounds": args.rounds}
            for app in APPS:
                print(f"[{n} nodes] {app} simulation ...", flush=True)
                result[app] = run_one(app, n, args, Path(tmp_name))
                if result[app].get("error"):
                    print(f"[{n} nodes] {app} ERROR: {result[app]['error']}", flush=True)
                    if result[app].get("log-tail"):
                        sys.stderr.write(result[app]["log-tail"])
            result.update(compare(result[FLOWER_DL], result[FLOOR], args.mem_limit_gib, args.rounds))
            results.append(result)
    return results


def yes_no(value: bool) -> str:
    """``yes`` or ``NO`` (capitals stand out in a table)."""
    return "yes" if value else "NO"


def table_rows(result: dict[str, Any]) -> list[tuple[str, ...]]:
    """One N's two rows: flower-dl's (with its ratio and targets), then the floor's."""
    rows = []
    for app in APPS:
        r = result[app]
        dl = app == FLOWER_DL
        rows.append(
            (
                str(result["nodes"]),
                app,
                fmt(r.get("s-per-round"), ".3f"),
                fmt(result["ratio-s-per-round"]) if dl else "1",
                fmt(r.get("startup-s"), ".1f"),
                fmt(r.get("launch-to-exit-s"), ".1f"),
                fmt(r["peak-rss-mib"], ".0f"),
                fmt(r["peak-pss-mib"], ".0f"),
                yes_no(result["meets-ratio-target"]) if dl else "-",
                yes_no(result["meets-memory-target"]) if dl else "-",
            )
        )
    return rows


def summary_line(result: dict[str, Any]) -> str:
    """flower-dl at one N: its round figure against the floor's and the targets, its start-up and Flower's part."""
    dl, floor = result[FLOWER_DL], result[FLOOR]
    return (
        f"{result['nodes']} nodes: flower-dl {fmt(dl.get('s-per-round'), '.3f')} s/round = "
        f"{fmt(result['ratio-s-per-round'])} x the floor's {fmt(floor.get('s-per-round'), '.3f')} "
        f"(target <= {TARGET_RATIO:g}: {yes_no(result['meets-ratio-target'])}), "
        f"{fmt(result['ratio-s-per-wave'])} x per wave of one message a node ({result['rounds'] + 1} waves "
        f"against the floor's {result['rounds']}: the evaluation after the last round is one more); peak RSS "
        f"{dl['peak-rss-mib'] / 1024:.2f} GiB (target <= {TARGET_RSS_GIB:g}: "
        f"{yes_no(result['meets-memory-target'])}); start-up {fmt(dl.get('startup-s'), '.1f')} s, of which "
        f"Flower's own (the floor's) {fmt(floor.get('startup-s'), '.1f')} s, "
        f"flower-dl's {fmt(result['flower-dl-own-startup-s'], '.1f')} s"
    )


def print_results(results: list[dict[str, Any]]) -> None:
    """The table, then each N's summary, per-round times, teardown, largest and left-over processes."""
    header = ("nodes", "app", "s/round", "x floor", "start-up s", "launch->exit s", "peak RSS MiB", "peak PSS MiB",
              f"<= {TARGET_RATIO:g}x", f"<= {TARGET_RSS_GIB:g} GiB")  # fmt: skip
    print_table(header, [row for r in results for row in table_rows(r)])
    for r in results:
        print(summary_line(r))
        for app in APPS:
            a = r[app]
            print(
                f"  {app}: rounds from log lines {[round(x, 2) for x in a.get('round-s-from-line-arrivals', [])]}, "
                f"teardown {a['teardown-s']:.1f} s, largest processes "
                f"{[(p['name'], p['peak-rss-mib']) for p in a['largest-processes'][:3]]}"
            )
            warn_leftovers(f"{r['nodes']} nodes, {app}", a)


def write_json(args: argparse.Namespace, machine: dict[str, Any], results: list[dict[str, Any]]) -> None:
    """The settings of both apps, the machine and the results, to ``--json``."""
    setting = {**scale_overrides(0, args.rounds, Path("-")), "num-nodes": args.nodes}
    for key in ("results-dir", "run-name"):
        setting.pop(key)
    out = {
        "benchmark": "scale",
        "setting": {
            FLOWER_DL: setting,
            FLOOR: {**floor_overrides(0, args.rounds), "num-nodes": args.nodes},
            "cpus-per-node": args.cpus_per_node,
            "mem-limit-gib": args.mem_limit_gib,
            "targets": {"ratio-s-per-round": TARGET_RATIO, "peak-rss-gib": TARGET_RSS_GIB},
            "quick": args.quick,
        },
        "machine": machine,
        "results": results,
    }
    Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    print(f"figures written to {args.json}")


def main(argv: list[str] | None = None) -> int:
    """Run both apps at every N, print the table; 0 if every run finished and flower-dl stayed under the limit."""
    args = parse_args(argv)
    machine = machine_info()
    print(
        f"ring of N nodes, mnist-5k iid, mlp, {args.rounds} round(s), 1 local epoch; then the floor "
        f"({MLP_FLOATS} float32 to every node and back per round); {machine['cpus']} CPUs, load {machine['loadavg']}",
        flush=True,
    )
    results = run_all(args)
    machine["loadavg-end"] = [round(x, 2) for x in os.getloadavg()]

    print()
    print_results(results)
    if args.json:
        write_json(args, machine, results)
    return 0 if all(r["under-limit"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
