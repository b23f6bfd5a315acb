"""Deployment: a real SuperLink and real SuperNodes on 127.0.0.1, the same app unchanged."""

from __future__ import annotations

import csv
import json

import pytest

from flower_dl.data.datasets import load_dataset
from flower_dl.data.split import split
from flower_dl.launch import local_deployment, run_app

from .conftest import ROOT, TWO_ROUNDS

pytestmark = pytest.mark.e2e


def _rows(path) -> dict[tuple[int, int], dict[str, str]]:
    with open(path) as fh:
        return {(int(r["round"]), int(r["node"])): r for r in csv.DictReader(fh)}


def test_five_supernodes_on_their_own_folders_match_the_simulation_and_survive_a_killed_node(
    tmp_path, sim_two_rounds
) -> None:
    out = tmp_path / "results"
    lines: list[str] = []
    # three rounds: round r's accuracy arrives with round r + 1's train reply, so a node killed as round 3
    # starts has reported rounds 1 and 2's training and round 1's accuracy
    overrides = {**{k: int(v) for k, v in (kv.split("=") for kv in TWO_ROUNDS.split())}, "num-server-rounds": 3}
    # each SuperNode sees only its own folder (its node config's data-dir), written by split from the
    # embedded data: round 1 must still be the simulation's on that data
    folders = tmp_path / "folders"
    split(load_dataset("mnist-5k"), partitioner="digits-per-node", num_nodes=5, digits_per_node=3, seed=42,
          out_dir=folders, layout="idx", source="mnist-5k")  # fmt: skip
    overrides.update({"dataset": "folder", "test-dir": str(folders)})
    # SuperNodes start in reverse order: a node's place comes from its partition-id, not the order
    node_dirs = str(folders / "node-{partition-id}")
    with local_deployment(tmp_path / "deploy", 5, data_dir=node_dirs, partition_ids=[4, 3, 2, 1, 0]) as dep:

        def on_line(line: str) -> None:
            lines.append(line)
            if "[ROUND 3/3]" in line:
                dep.kill_supernode(2)  # the SuperNode of partition-id 2 crashes as round 3 starts

        rc, status = run_app(
            ROOT,
            {
                **overrides,
                "results-dir": str(out),
                "run-name": "deployed",
                "node-wait-timeout": 60.0,
                "round-timeout": 45.0,
            },
            dep.env,
            on_line=on_line,
        )
    log = "".join(lines)
    assert rc == 0 and status == "finished:completed", log[-4000:]
    folder = out / "deployed"
    rows = _rows(folder / "metrics.csv")
    assert sorted(rows) == [(r, n) for r in (1, 2, 3) for n in range(5)]
    # round 1, before the crash: exactly the simulation's per-node metrics (same config and seed),
    # after an exchange over real SuperNodes
    _, sim_folder = sim_two_rounds
    simulated = _rows(sim_folder / "metrics.csv")
    for n in range(5):
        for col in ("accuracy", "num-train-examples", "leakage"):
            assert rows[(1, n)][col] == simulated[(1, n)][col], (n, col)
        # losses: equal up to float summation order (a SuperNode's process runs torch with
        # its default thread count, a simulation worker with one thread)
        for col in ("loss", "train-loss"):
            assert float(rows[(1, n)][col]) == pytest.approx(float(simulated[(1, n)][col]), rel=1e-5), (n, col)
        assert int(rows[(1, n)]["num-train-examples"]) > 1200 and float(rows[(1, n)]["leakage"]) > 0
    assert rows[(2, 2)]["failed"] == "0" and rows[(2, 2)]["train-loss"] != ""  # it trained in round 2 ...
    assert rows[(2, 2)]["accuracy"] == ""  # ... but died before its round-3 reply could carry round 2's accuracy
    # round 3: node 2 is gone; the others train, mix over the models that arrived, and evaluate
    assert rows[(3, 2)]["failed"] == "1" and rows[(3, 2)]["accuracy"] == ""
    for r in (2, 3):
        assert all(rows[(r, n)]["failed"] == "0" and rows[(r, n)]["accuracy"] != "" for n in (0, 1, 3, 4))
    failures = json.loads((folder / "summary.json").read_text())["failures"]
    stages = {(f["round"], f["node"], f["stage"]) for f in failures}
    assert stages == {(3, 2, "train"), (2, 2, "evaluate"), (3, 2, "evaluate")}


def test_missing_and_duplicated_partition_ids_fail_clearly(tmp_path) -> None:
    lines: list[str] = []
    with local_deployment(tmp_path / "deploy", 3, partition_ids=[0, 0, 2]) as dep:
        _rc, status = run_app(
            ROOT,
            {
                "num-nodes": 3,
                "topology": "line",
                "num-server-rounds": 1,
                "results-dir": str(tmp_path),
                "node-wait-timeout": 30.0,
            },
            dep.env,
            on_line=lines.append,
        )
    log = "".join(lines)
    assert status.startswith("finished:failed"), log[-3000:]
    assert "missing: [1]; duplicated: [0]" in log
