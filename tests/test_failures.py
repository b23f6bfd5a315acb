"""Failing nodes must not stop a run: a node that raises in training, and one that fails in the exchange."""

from __future__ import annotations

import csv
import json

import pytest

from .conftest import TWO_ROUNDS, run_cli

pytestmark = pytest.mark.e2e


def test_failing_nodes_are_recorded_and_the_run_completes(tmp_path) -> None:
    proc = run_cli(
        "run",
        "-c",
        f"{TWO_ROUNDS} run-name='faulty' results-dir='{tmp_path}'",
        env={"FLOWER_DL_FAULTS": "train:2:1,share:4:0"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    folder = tmp_path / "faulty"
    with open(folder / "metrics.csv") as fh:
        rows = {(int(r["round"]), int(r["node"])): r for r in csv.DictReader(fh)}
    assert rows[(1, 2)]["failed"] == "1" and rows[(1, 2)]["train-loss"] == ""
    assert all(r["failed"] == "0" for key, r in rows.items() if key != (1, 2))
    assert all(r["accuracy"] != "" for r in rows.values())  # everyone still evaluates
    # node 4 failed in the exchange: no leakage measured, its neighbour 2 got nothing from it
    assert rows[(1, 4)]["leakage"] == ""
    with open(folder / "edges.csv") as fh:
        edges = {(int(e["src"]), int(e["dst"])): e for e in csv.DictReader(fh)}
    assert int(rows[(2, 2)]["num-train-examples"]) == 1200 + int(edges[(0, 2)]["new-samples"])
    assert edges[(4, 2)]["samples-sent"] == "0" and edges[(4, 2)]["failed"] == "1"
    assert "node 4 failed in the exchange" in edges[(4, 2)]["failure"]
    assert "node 4 failed" in edges[(2, 4)]["failure"] and edges[(0, 1)]["failed"] == "0"
    assert all(e["failed"] in ("0", "1") for e in edges.values())  # never blank
    failures = json.loads((folder / "summary.json").read_text())["failures"]
    stages = {(f["round"], f["node"], f["stage"]) for f in failures}
    assert stages == {(0, 4, "exchange"), (1, 2, "train")}
    assert all("injected failure" in f["reason"] for f in failures)
