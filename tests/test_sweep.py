"""Sweeps: a 2x2 grid of real Flower simulations, interrupted (SIGINT) and resumed; then the report."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from flower_dl.sweep import cell_id, expand, parse_grid

from .conftest import ROOT, run_cli

GRID = "share-ratio=[0, 0.2] strategy=['decentralized', 'fedavg']"
FIXED = "num-server-rounds=1 local-epochs=1"


def test_parse_and_expand_grid() -> None:
    grid = parse_grid("share-ratio=[0, 0.1, 0.2] model='cnn' digits-per-node=[2,4]")
    assert grid == {"share-ratio": [0, 0.1, 0.2], "model": ["cnn"], "digits-per-node": [2, 4]}
    cells = expand(grid, [1, 2])
    assert len(cells) == 3 * 2 * 2 and cells[0] == {"share-ratio": 0, "model": "cnn", "digits-per-node": 2, "seed": 1}
    assert cell_id({"a": 1, "b": 2}) == cell_id({"b": 2, "a": 1, "results-dir": "/x"})
    assert cell_id({"a": 1}) != cell_id({"a": 2})
    with pytest.raises(ValueError, match="--grid: cannot parse"):
        parse_grid("share-ratio 0.1")


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_sweep_survives_sigint_resumes_and_reports(tmp_path) -> None:
    table = tmp_path / "sweep.csv"
    cmd = [sys.executable, "-m", "flower_dl.cli", "sweep", "-g", GRID, "-c", FIXED, "-t", str(table)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if table.exists() and len(_rows(table)) >= 5:
            break
        time.sleep(0.5)
    assert proc.poll() is None, "sweep ended before it could be interrupted"
    time.sleep(3)  # into the next cell
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out[-2000:] + err[-2000:]
    assert "interrupted" in err
    rows = _rows(table)
    per_cell = Counter(r["cell"] for r in rows)
    assert 1 <= len(per_cell) < 4 and set(per_cell.values()) == {5}, per_cell  # only complete cells
    finished_before = set(per_cell)

    resumed = run_cli("sweep", "-g", GRID, "-c", FIXED, "-t", str(table))
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert f"({len(finished_before)} already in" in resumed.stdout
    rows = _rows(table)
    per_cell = Counter(r["cell"] for r in rows)
    assert len(per_cell) == 4 and set(per_cell.values()) == {5}
    assert finished_before < set(per_cell)
    combos = {(r["strategy"], float(r["share-ratio"])) for r in rows}
    assert combos == {(s, x) for s in ("decentralized", "fedavg") for x in (0.0, 0.2)}
    for r in rows:
        assert r["round"] == "1" and 0 <= float(r["accuracy"]) <= 1
        assert (float(r["leakage"]) == 0.0) == (float(r["share-ratio"]) == 0.0)

    again = run_cli("sweep", "-g", GRID, "-c", FIXED, "-t", str(table), timeout=120)
    assert again.returncode == 0 and "running 0" in again.stdout
    assert len(_rows(table)) == 20

    out_dir = tmp_path / "report"
    report = run_cli("report", str(table), "-o", str(out_dir), timeout=120)
    assert report.returncode == 0, report.stderr
    pngs = sorted(out_dir.glob("*.png"))
    assert len(pngs) >= 6 and (out_dir / "summary.md").exists()
    for png in pngs:
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, png
