"""Sweep benchmark: a grid's cells inside one Flower run against one ``flwr run`` per cell, in one run.

Usage::

    python benchmarks/bench_sweep.py [--cells N] [--modes one-run separate] [--json OUT.json] [--quick]

Runs the study grid of docs/study.md (``strategy=['decentralized', 'fedavg']
digits-per-node=[2, 4, 6, 8] share-ratio=[0, 0.1, 0.2, 0.5, 1.0]``, 40 cells
of the default config: 5 nodes on the study's tree, MLP, 10 rounds of 3
local epochs, the embedded data) the two ways ``flower-dl sweep`` can, one
after the other, through the package's own path (``flower_dl.launch.run_sweep``,
what the command runs after checking its arguments):

* ``one-run``: every cell inside one Flower run (the default of ``flower-dl
  sweep``): the simulated nodes keep their processes and loaded data.
* ``separate``: one ``flwr run`` per cell (``flower-dl sweep --separate-runs``).

Measured from the callbacks' and output lines' arrival times: the sweep's wall
time, each cell's wall time (from its start to its rows being in the table),
and each cell's *overhead*: its wall time minus its rounds, the rounds being
Flower's own "Strategy execution finished in X s" of that cell. In the
one-run mode the first cell also carries the run's start-up (reported apart).
Prints the ratio of the two sweeps' wall times (target: one-run <= 1/3 of
separate) and the median overhead per cell (target: <= 3 s in one run).

``--cells N``: only the first N cells of the grid (both modes run the same
cells); ``--quick``: 2 cells of 1 round, to check the script end to end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import APP_DIR, fmt, machine_info, print_table
from flower_dl.launch import Cell, CellResult, flwr_output, parse_grid, parse_overrides, run_sweep, sweep_cells

STUDY_GRID = "strategy=['decentralized', 'fedavg'] digits-per-node=[2, 4, 6, 8] share-ratio=[0, 0.1, 0.2, 0.5, 1.0]"


def timed_sweep(cells: list[Cell], workdir: Path, separate: bool) -> dict[str, Any]:
    """Run ``cells`` one way; time the sweep and each cell."""
    t0 = time.monotonic()
    starts: dict[str, float] = {}
    ends: dict[str, float] = {}
    rounds: dict[str, float] = {}
    current: list[str] = []

    def on_start(cell: Cell) -> None:
        starts[cell.id] = time.monotonic() - t0
        current[:] = [cell.id]

    def on_line(line: str) -> None:
        seconds = flwr_output.strategy_seconds(line)
        if seconds is not None and current:
            rounds[current[0]] = seconds

    def on_end(cell: Cell, result: CellResult) -> None:
        ends[cell.id] = time.monotonic() - t0
        if not result.ok:
            print(f"    cell {cell.id} failed: {result.status}", flush=True)

    outcome = run_sweep(
        cells, workdir / "table.csv", app_dir=APP_DIR, separate_runs=separate,
        on_cell_start=on_start, on_line=on_line, on_cell_end=on_end,
    )  # fmt: skip
    total = time.monotonic() - t0
    per_cell = [
        {"cell": c.id, "label": c.label, "start-s": starts.get(c.id), "wall-s": ends[c.id] - starts[c.id],
         "rounds-s": rounds.get(c.id), "overhead-s": ends[c.id] - starts[c.id] - rounds.get(c.id, 0.0)}
        for c in cells if c.id in ends and c.id in starts
    ]  # fmt: skip
    return {"total-s": total, "written": outcome.written, "failed": list(outcome.failed), "cells": per_cell}


def summarise(mode: str, result: dict[str, Any]) -> dict[str, Any]:
    """Median and mean of the per-cell figures; the first cell's start-up (the run's, in one-run mode)."""
    cells = result["cells"]
    overheads = [c["overhead-s"] for c in cells[1:]] or [c["overhead-s"] for c in cells]
    return {
        "mode": mode,
        "cells": len(cells),
        "total-s": result["total-s"],
        "s-per-cell": result["total-s"] / max(len(cells), 1),
        "rounds-s-mean": statistics.mean(c["rounds-s"] or 0.0 for c in cells) if cells else None,
        "overhead-s-median": statistics.median(overheads) if overheads else None,
        "first-cell-overhead-s": cells[0]["overhead-s"] if cells else None,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grid", default=STUDY_GRID, help="the grid (as flower-dl sweep -g); default: the study's")
    parser.add_argument("--run-config", default="", help="fixed run-config values of every cell (as -c)")
    parser.add_argument("--cells", type=int, default=None, help="only the first N cells (default: all)")
    parser.add_argument("--modes", nargs="+", default=["one-run", "separate"], choices=["one-run", "separate"])
    parser.add_argument("--json", help="write the figures to this JSON file")
    parser.add_argument("--quick", action="store_true", help="2 cells of 1 round: checks the script works")
    args = parser.parse_args(argv)
    if args.quick:
        args.cells, args.run_config = 2, "num-server-rounds=1 local-epochs=1"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    grid = parse_grid(args.grid)
    base = parse_overrides([args.run_config] if args.run_config else None)
    cells = sweep_cells(APP_DIR, grid, base, [int(base.get("seed", 42))])[: args.cells]
    machine = machine_info()
    print(f"{len(cells)} cells, modes {args.modes}; {machine['cpus']} CPUs, load {machine['loadavg']}", flush=True)
    raw, rows = {}, []
    for mode in args.modes:
        with tempfile.TemporaryDirectory(prefix=f"flower-dl-bench-sweep-{mode}-") as tmp:
            print(f"[{mode}] ...", flush=True)
            raw[mode] = timed_sweep(cells, Path(tmp), separate=mode == "separate")
        rows.append(summarise(mode, raw[mode]))
    print()
    print_table(
        ("mode", "cells", "total s", "s/cell", "rounds s/cell", "overhead s/cell (median)", "first cell overhead s"),
        [(r["mode"], str(r["cells"]), fmt(r["total-s"], ".1f"), fmt(r["s-per-cell"], ".1f"),
          fmt(r["rounds-s-mean"], ".1f"), fmt(r["overhead-s-median"], ".2f"), fmt(r["first-cell-overhead-s"], ".1f"))
         for r in rows],
    )  # fmt: skip
    if len(rows) == 2:
        print(f"one-run / separate wall time: {rows[0]['total-s'] / rows[1]['total-s']:.2f} (target <= 0.33)")
    if args.json:
        out = {"benchmark": "sweep", "grid": args.grid, "run-config": args.run_config, "machine": machine,
               "summary": rows, "raw": raw}  # fmt: skip
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
        print(f"figures written to {args.json}")
    return 0 if all(not r["failed"] for r in raw.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
