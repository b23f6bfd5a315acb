"""The results table on disk: one reader, appends that a crash cannot turn into a corrupt table."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pytest

from flower_dl.report import read_table as read_frame
from flower_dl.results import table as results_table
from flower_dl.results.columns import TABLE_COLUMNS
from flower_dl.results.table import append_cell, done_cells, journal_path, read_table, write_table


def finished_run(folder: Path, nodes: int = 2, rounds: int = 2, accuracy: float = 0.5) -> Path:
    """A run folder's ``metrics.csv`` (no config.json: no provenance), as a finished cell leaves it."""
    folder.mkdir(parents=True)
    metrics = folder / "metrics.csv"
    with open(metrics, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["round", "node", "accuracy", "failed"])
        writer.writeheader()
        for r in range(1, rounds + 1):
            for n in range(nodes):
                writer.writerow({"round": r, "node": n, "accuracy": accuracy, "failed": 0})
    return metrics


def cells_of(rows: list[dict]) -> list[tuple[str, str, str]]:
    return [(r["cell"], r["round"], r["node"]) for r in rows]


def test_append_cell_appends_to_a_csv_table_and_leaves_its_rows_byte_for_byte(tmp_path) -> None:
    table = tmp_path / "t.csv"
    assert read_table(table) == [] and done_cells([]) == set()
    assert append_cell(table, {"seed": 1}, "a", finished_run(tmp_path / "a")) == 4
    first = table.read_bytes()
    assert append_cell(table, {"seed": 2}, "b", finished_run(tmp_path / "b", accuracy=0.7)) == 4
    assert table.read_bytes().startswith(first)
    rows = read_table(table)
    assert list(rows[0]) == list(TABLE_COLUMNS)
    assert done_cells(rows) == {"a", "b"} and [r["seed"] for r in rows] == ["1"] * 4 + ["2"] * 4
    assert not journal_path(table).exists()
    # what the whole-table writer would have written: appending changes how, not what
    write_table(tmp_path / "whole.csv", rows)
    assert (tmp_path / "whole.csv").read_bytes() == table.read_bytes()


def test_an_append_cut_short_is_invisible_to_the_reader_and_undone_by_the_next_append(tmp_path, monkeypatch) -> None:
    table = tmp_path / "t.csv"
    append_cell(table, {"seed": 1}, "a", finished_run(tmp_path / "a"))
    before = read_table(table)

    def crash_mid_write(table: Path, text: str) -> None:  # the journal is written, then half a line lands
        results_table.atomic_write_text(journal_path(table), f"{table.stat().st_size}\n")
        with open(table, "ab") as fh:
            fh.write(text.encode()[: len(text) // 2 + 3])
        raise KeyboardInterrupt

    monkeypatch.setattr(results_table, "_append_csv", crash_mid_write)
    with pytest.raises(KeyboardInterrupt):
        append_cell(table, {"seed": 2}, "b", finished_run(tmp_path / "b"))
    monkeypatch.undo()
    assert journal_path(table).exists() and not table.read_bytes().endswith(b"\n")
    # the reader, the sweep's resume and the report see the rows before the crash, and only those
    assert read_table(table) == before and done_cells(read_table(table)) == {"a"}
    assert read_frame(table)["cell"].tolist() == ["a"] * 4
    # the next append rolls the half-written cell back first: "b" runs again, "a" is untouched
    append_cell(table, {"seed": 2}, "b", finished_run(tmp_path / "b2"))
    assert cells_of(read_table(table)) == cells_of(before) + [("b", str(r), str(n)) for r in (1, 2) for n in (0, 1)]
    assert read_table(table)[:4] == before and not journal_path(table).exists()


def test_a_table_in_older_columns_is_rewritten_whole_in_todays(tmp_path) -> None:
    table = tmp_path / "t.csv"
    pd.DataFrame([{"cell": "old", "round": 1, "node": 0, "accuracy": 0.5}]).to_csv(table, index=False)
    append_cell(table, {"seed": 1}, "new", finished_run(tmp_path / "a", nodes=1, rounds=1))
    rows = read_table(table)
    assert list(rows[0]) == list(TABLE_COLUMNS) and [r["cell"] for r in rows] == ["old", "new"]


def test_a_workbook_is_rewritten_and_reads_as_the_csv_table_does(tmp_path) -> None:
    pytest.importorskip("openpyxl")
    for name in ("t.xlsx", "t.csv"):
        append_cell(tmp_path / name, {"seed": 1}, "a", finished_run(tmp_path / f"{name}.runs" / "a"))
        append_cell(tmp_path / name, {"seed": 2}, "b", finished_run(tmp_path / f"{name}.runs" / "b"))
    assert not journal_path(tmp_path / "t.xlsx").exists()
    xl, csv_ = read_table(tmp_path / "t.xlsx"), read_table(tmp_path / "t.csv")
    assert done_cells(xl) == done_cells(csv_) == {"a", "b"} and len(xl) == len(csv_) == 8
    pd.testing.assert_frame_equal(read_frame(tmp_path / "t.xlsx"), read_frame(tmp_path / "t.csv"), check_dtype=False)
