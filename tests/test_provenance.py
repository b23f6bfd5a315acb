"""Every setting and the provenance of a run reach its rows; the quiet log keeps flower-dl's lines only."""

from __future__ import annotations

import csv
import json
import subprocess
import tomllib
from pathlib import Path

import numpy as np
import pytest

from flower_dl.config import OUTPUT_KEYS, ConfigError, RunConfig
from flower_dl.launch import flwr_output
from flower_dl.launch.sweep import append_cell, read_table
from flower_dl.results import provenance
from flower_dl.results.columns import CONFIG_COLUMNS, PROVENANCE_COLUMNS, TABLE_COLUMNS

from .conftest import ROOT


def test_every_run_config_key_of_pyproject_is_a_table_column() -> None:
    """A key added to the run config is a column from then on: a sweep over it can never merge its values."""
    keys = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    assert set(CONFIG_COLUMNS) == set(keys) - set(OUTPUT_KEYS)
    assert len(set(TABLE_COLUMNS)) == len(TABLE_COLUMNS)


def test_a_sweeps_rows_carry_every_key_and_the_provenance(tmp_path: Path) -> None:
    run = tmp_path / "cell"
    run.mkdir()
    (run / "metrics.csv").write_text("round,node,accuracy\n1,0,0.5\n1,1,0.25\n")
    prov = provenance.run_provenance("mnist-5k", {0: "aa", 1: "aa"}, {0: "cpu", 1: "cuda:0 (H100)"})
    (run / "config.json").write_text(json.dumps({"provenance": prov}))
    table = tmp_path / "t.csv"
    for lr in (0.01, 0.05):
        cfg = RunConfig(lr=lr).to_run_config()
        append_cell(table, cfg, RunConfig(lr=lr).cell_id, run / "metrics.csv")
    rows = read_table(table)
    assert sorted({r["lr"] for r in rows}) == ["0.01", "0.05"]
    assert all(set(CONFIG_COLUMNS) | set(PROVENANCE_COLUMNS) <= set(r) for r in rows)
    assert [r["device"] for r in rows[:2]] == ["cpu", "cuda:0 (H100)"]
    assert {r["data-digest"] for r in rows} == {"aa"} and {r["flwr-version"] for r in rows} == {prov["flwr-version"]}
    with open(table, newline="") as fh:
        assert tuple(next(csv.reader(fh))) == TABLE_COLUMNS


def test_the_run_data_digest() -> None:
    assert provenance.run_data_digest({0: "aa", 1: "aa"}) == "aa"  # one shared dataset
    mixed = provenance.run_data_digest({0: "aa", 1: "bb"})  # node folders
    assert mixed not in ("aa", "bb") and mixed == provenance.run_data_digest({1: "bb", 0: "aa"})
    assert provenance.run_data_digest({}) == ""
    a = provenance.array_digest(np.zeros((2, 3), "uint8"))
    b = provenance.array_digest(np.zeros((3, 2), "uint8"))  # same bytes, another shape
    assert a != b


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def test_the_commit_and_a_dirty_checkout(tmp_path: Path, monkeypatch) -> None:
    repo = tmp_path / "checkout"
    repo.mkdir()
    (repo / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    monkeypatch.setattr(provenance, "_source_dirs", lambda: [repo])
    provenance.git_commit.cache_clear()
    try:
        assert provenance.git_commit() == head.strip()
        (repo / "pyproject.toml").write_text("[project]\nname = 'y'\n")
        provenance.git_commit.cache_clear()
        assert provenance.git_commit() == head.strip() + "-dirty"
        monkeypatch.setattr(provenance, "_source_dirs", lambda: [tmp_path / "nowhere"])
        provenance.git_commit.cache_clear()
        assert provenance.git_commit() == ""
    finally:
        provenance.git_commit.cache_clear()


def test_checkpoint_every_is_checked() -> None:
    with pytest.raises(ConfigError, match="checkpoint-every: -1 is out of range"):
        RunConfig(checkpoint_every=-1)
    with pytest.raises(ConfigError, match="resume: 'yes' is not a boolean"):
        RunConfig(resume="yes")
    assert RunConfig(resume=True).cell_id == RunConfig().cell_id == RunConfig(checkpoint_every=5).cell_id


def info(text: str) -> str:
    return f"\x1b[92mINFO \x1b[0m:      {text}\n"


def test_the_quiet_log_keeps_flower_dls_lines_and_drops_flowers_chatter() -> None:
    quiet = flwr_output.QuietLog()
    kept = [
        info("round 2/10: mean accuracy 30.22% (round 1's models), 2.3 s elapsed, ETA 6.9 s"),
        info("leakage per node: 0: 0.1"),
        "\x1b[93mWARNING \x1b[0m:   mia-samples = 200 is more than 1 node(s) can supply: capped to 90 on node 2\n",
        info("results written to /tmp/x"),
    ]
    dropped = [
        info("[ROUND 2/10]"),
        "\x1b[93mWARNING \x1b[0m:   Since flwr 1.32, default simulated SuperNodes changed from 10 to 2.\n",
        info("Starting Flower Simulation"),
        "Successfully started run 123\n",
        '  File "x.py", line 3, in f\n',
        "\x1b[91mERROR \x1b[0m:     An exception was raised when processing a message by RayBackend\n",
        "\x1b[36m(ClientAppActor pid=1)\x1b[0m \x1b[93mWARNING \x1b[0m:   Manually terminating ClientAppActor\n",
        "\x1b[91mERROR \x1b[0m:     flower-dl: the run failed: 5 nodes failed\n",
        info(""),
    ]
    assert [quiet.keep(line) for line in kept] == [True] * len(kept)
    assert [quiet.keep(line) for line in dropped] == [False] * len(dropped)
    status = "finished:failed (Simulation failed with exception: 5 nodes failed to identify themselves: x)"
    assert flwr_output.failure_reason(status) == "5 nodes failed to identify themselves: x"
