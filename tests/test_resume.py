"""A run keeps what it finished, and a resumed run computes what the uninterrupted one did.

In process, with the real node handlers behind an in-process grid
(:class:`conftest.FakeGrid`): one run is never interrupted; another is stopped
by a Ctrl-C in round 3 (the grid raises ``KeyboardInterrupt`` when it is
handed round 3's train messages); a third, on a new grid whose nodes have
other Flower node ids and no state (a new Flower run), resumes the second's
folder. Every strategy family's server state goes through the checkpoint:
D-PSGD's per-node models, K-GT's trackers, Choco's public copies, and Flower's
FedAdam optimizer moments.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from flower_dl import protocol
from flower_dl.config import RunConfig
from flower_dl.server.app import run_experiment

from .conftest import FakeGrid

pytestmark = pytest.mark.usefixtures("task_identity")

TIMING = ("train-seconds",)
"""Columns that measure time, not what was computed: the only ones a resumed run may change."""


class InterruptedGrid(FakeGrid):
    """A grid whose operator presses Ctrl-C when round ``at``'s train messages are sent."""

    def __init__(self, cfg: RunConfig, at: int, **kwargs) -> None:
        super().__init__(cfg, **kwargs)
        self.at = at

    def send_and_receive(self, messages, timeout=None):
        messages = list(messages)
        for msg in messages:
            if (
                msg.metadata.message_type == protocol.TRAIN
                and protocol.parse_train_request(msg).server_round == self.at
            ):
                raise KeyboardInterrupt
        return super().send_and_receive(messages, timeout)


def _rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "metrics.csv", newline="") as fh:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(fh)]


def _status(folder: Path) -> dict:
    return json.loads((folder / "status.json").read_text())


@pytest.mark.parametrize("strategy", ["decentralized", "gradient-tracking", "choco", "fedadam"])
def test_a_resumed_run_equals_the_uninterrupted_one(tmp_path: Path, strategy: str, small_mnist: str) -> None:
    cfg = RunConfig(
        strategy=strategy, num_server_rounds=4, local_epochs=1, mia_samples=20, results_dir=str(tmp_path),
        run_name="run", dataset="mnist", data_dir=small_mnist,
    )  # fmt: skip
    whole = run_experiment(FakeGrid(cfg), cfg.replace(run_name="whole"))
    assert _status(whole)["state"] == "completed" and not (whole / "checkpoint.pkl").exists()

    with pytest.raises(KeyboardInterrupt):
        run_experiment(InterruptedGrid(cfg, at=3), cfg)
    folder = tmp_path / "run"
    status = _status(folder)
    assert (status["state"], status["rounds-done"], status["checkpoint-round"]) == ("interrupted", 2, 2)
    kept = _rows(folder)
    assert sorted({int(r["round"]) for r in kept}) == [1, 2]  # every finished round is on disk
    assert kept[:5] == _rows(whole)[:5]  # round 1 (round 2's accuracy comes with round 3's messages)
    assert json.loads((folder / "summary.json").read_text())["evaluated-round"] == 1

    resumed = run_experiment(FakeGrid(cfg, base=5000), cfg.replace(resume=True))
    assert resumed == folder and _status(folder)["state"] == "completed"
    assert _rows(folder) == _rows(whole)
    summary, whole_summary = (json.loads((f / "summary.json").read_text()) for f in (folder, whole))
    assert summary["accuracy"] == whole_summary["accuracy"]
    assert not (folder / "checkpoint.pkl").exists()


def test_resume_refuses_a_checkpoint_of_another_config(tmp_path: Path) -> None:
    cfg = RunConfig(num_server_rounds=3, local_epochs=1, mia_samples=0, results_dir=str(tmp_path), run_name="run")
    with pytest.raises(KeyboardInterrupt):
        run_experiment(InterruptedGrid(cfg, at=2), cfg)
    other = cfg.replace(lr=0.05, resume=True)
    with pytest.raises(ValueError, match="checkpoint: made by the run config"):
        run_experiment(FakeGrid(other), other)


def test_resuming_a_completed_run_changes_nothing(tmp_path: Path) -> None:
    cfg = RunConfig(num_server_rounds=1, local_epochs=1, mia_samples=0, results_dir=str(tmp_path), run_name="run")
    folder = run_experiment(FakeGrid(cfg), cfg)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    grid = FakeGrid(cfg)
    assert run_experiment(grid, cfg.replace(resume=True)) == folder
    assert grid.seen == []  # no node was asked anything
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_a_failed_run_says_how_and_where_it_stopped(tmp_path: Path) -> None:
    cfg = RunConfig(num_server_rounds=3, local_epochs=1, mia_samples=0, results_dir=str(tmp_path), run_name="run")

    class Broken(FakeGrid):
        def send_and_receive(self, messages, timeout=None):
            messages = list(messages)
            if any(m.metadata.message_type == protocol.EVALUATE for m in messages):
                raise RuntimeError("the SuperLink went away")
            return super().send_and_receive(messages, timeout)

    cfg = cfg.replace(evaluate_in_train=False)
    with pytest.raises(RuntimeError, match="went away"):
        run_experiment(Broken(cfg), cfg)
    status = _status(tmp_path / "run")
    assert status["state"] == "failed" and status["rounds-done"] == 0 and "went away" in status["error"]
    assert (tmp_path / "run" / "config.json").exists() and (tmp_path / "run" / "edges.csv").exists()


def test_a_sweep_cell_interrupted_mid_run_resumes_from_its_checkpoint(tmp_path: Path, small_mnist: str) -> None:
    """One Flower run's cells (``sweep-cells``): Ctrl-C in the first cell's round 3, then the sweep again."""
    from flower_dl.server.app import run_cells

    base = RunConfig(
        num_server_rounds=4, local_epochs=1, mia_samples=0, results_dir=str(tmp_path / "cells"), dataset="mnist",
        data_dir=small_mnist,
    )  # fmt: skip
    cells = [base.replace(share_ratio=s, run_name=base.replace(share_ratio=s).cell_id, resume=True) for s in (0.1, 0.2)]
    reference = [run_experiment(FakeGrid(c), c.replace(results_dir=str(tmp_path / "ref"), resume=False)) for c in cells]

    with pytest.raises(KeyboardInterrupt):
        run_cells(InterruptedGrid(cells[0], at=3), cells)
    first = tmp_path / "cells" / cells[0].cell_id
    assert _status(first)["state"] == "interrupted" and (first / "checkpoint.pkl").exists()
    assert not (tmp_path / "cells" / cells[1].cell_id).exists()

    run_cells(FakeGrid(cells[0], base=9000), cells)  # the sweep run again: a new Flower run
    for cell, ref in zip(cells, reference):
        folder = tmp_path / "cells" / cell.cell_id
        assert _status(folder)["state"] == "completed"
        assert _rows(folder) == _rows(ref)
