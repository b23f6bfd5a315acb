"""Deployment: a real SuperLink and real SuperNodes on 127.0.0.1, the same app unchanged."""

from __future__ import annotations

import csv
import json

from flower_dl.cli import launch
from flower_dl.processes import local_deployment

from .conftest import ROOT, TWO_ROUNDS


def test_superlink_and_five_supernodes_run_two_rounds_with_exchange(tmp_path, sim_two_rounds) -> None:
    out = tmp_path / "results"
    lines: list[str] = []
    # SuperNodes are started in reverse order: the topology position comes from partition-id
    with local_deployment(tmp_path / "deploy", 5, partition_ids=[4, 3, 2, 1, 0]) as dep:
        rc, status = launch(
            ROOT,
            {**{k: int(v) for k, v in (kv.split("=") for kv in TWO_ROUNDS.split())}, "results-dir": str(out), "run-name": "deployed",
             "node-wait-timeout": 60.0},
            dep.env, on_line=lines.append,
        )
    log = "".join(lines)
    assert rc == 0 and status == "finished:completed", log[-4000:]
    folder = out / "deployed"
    with open(folder / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [(int(r["round"]), int(r["node"])) for r in rows] == [(r, n) for r in (1, 2) for n in range(5)]
    assert all(float(r["leakage"]) > 0 and int(r["num-train-examples"]) > 1200 for r in rows)
    # the same config and seed as the simulation: the very same per-node accuracies
    _, sim_folder = sim_two_rounds
    deployed = json.loads((folder / "summary.json").read_text())["accuracy"]
    simulated = json.loads((sim_folder / "summary.json").read_text())["accuracy"]
    assert deployed == simulated


def test_missing_and_duplicated_partition_ids_fail_clearly(tmp_path) -> None:
    lines: list[str] = []
    with local_deployment(tmp_path / "deploy", 3, partition_ids=[0, 0, 2]) as dep:
        rc, status = launch(
            ROOT, {"num-nodes": 3, "topology": "line", "num-server-rounds": 1, "results-dir": str(tmp_path),
                   "node-wait-timeout": 30.0},
            dep.env, on_line=lines.append,
        )
    log = "".join(lines)
    assert status.startswith("finished:failed"), log[-3000:]
    assert "missing: [1]; duplicated: [0]" in log


def test_a_supernode_killed_mid_run_does_not_stop_the_run(tmp_path) -> None:
    lines: list[str] = []
    with local_deployment(tmp_path / "deploy", 3) as dep:

        def on_line(line: str) -> None:
            lines.append(line)
            if "[ROUND 2/2]" in line:
                dep.kill_supernode(2)  # partition-id 2 crashes as round 2 starts

        rc, status = launch(
            ROOT,
            {"num-nodes": 3, "topology": "line", "num-server-rounds": 2, "local-epochs": 1,
             "round-timeout": 45.0, "results-dir": str(tmp_path), "run-name": "killed"},
            dep.env, on_line=on_line,
        )
    log = "".join(lines)
    assert rc == 0 and status == "finished:completed", log[-4000:]
    with open(tmp_path / "killed" / "metrics.csv") as fh:
        rows = {(int(r["round"]), int(r["node"])): r for r in csv.DictReader(fh)}
    assert all(rows[(1, n)]["failed"] == "0" for n in range(3)), rows
    assert rows[(2, 2)]["failed"] == "1" and rows[(2, 2)]["accuracy"] == ""
    assert all(rows[(2, n)]["failed"] == "0" and rows[(2, n)]["accuracy"] != "" for n in (0, 1))
    failures = json.loads((tmp_path / "killed" / "summary.json").read_text())["failures"]
    assert {(f["round"], f["node"], f["stage"]) for f in failures} == {(2, 2, "train"), (2, 2, "evaluate")}
