"""A sweep's results table on disk: the one reader, and the writers that add a finished cell's rows.

The table (CSV, or ``.xlsx`` by extension) holds one row per cell x round x
node in the columns of :data:`flower_dl.results.columns.TABLE_COLUMNS`. The
sweep reads it to skip the cells already done (:func:`read_table`,
:func:`done_cells`) and adds each cell's rows once the cell finishes
(:func:`append_cell`); ``flower-dl report`` reads it through the same reader
(:func:`read_columns_and_rows`) and makes a DataFrame of it.

Crash safety
------------
A CSV table grows by appending: the cell's rows are written after the
existing ones in one write and flushed to disk, so finishing a cell costs its
own rows, not the whole table's. An append cut short (a crash, a kill, a full
disk) would leave a prefix of the cell's rows, and a partial last line: the
reader would see some rows of a cell, and the sweep would count the cell as
done and never run the rest. So every append is bracketed by a small journal
beside the table, ``.<table name>.append`` (written atomically before the
append, removed once the appended bytes are on disk), that holds the table's
length before the append. While the journal exists, the reader reads only
that many bytes (a report drawn during a sweep never sees half a cell), and
the next append first truncates the table back to it: the cell cut short is
run again, and the rows before it are never touched.

A workbook cannot be appended to, so an ``.xlsx`` table (and a CSV table
whose header is not today's columns, or that does not end in a newline) is
rewritten whole, through :func:`flower_dl.results.files.atomic_write_bytes`:
a crash leaves the old table or the new one, never a mix.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from flower_dl.results.columns import CONFIG_COLUMNS, TABLE_COLUMNS, TEXT_COLUMNS
from flower_dl.results.files import atomic_write_bytes, atomic_write_text, csv_text, read_metrics
from flower_dl.results.provenance import row_provenance


def is_workbook(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names an Excel workbook (``.xlsx``, any case) rather than a CSV table."""
    return Path(path).suffix.lower() == ".xlsx"


def journal_path(table: str | os.PathLike[str]) -> Path:
    """The journal of an append in progress to ``table``: ``.<name>.append`` beside it (see the module docstring)."""
    table = Path(table)
    return table.with_name(f".{table.name}.append")


def _committed_length(table: Path) -> int | None:
    """The table's length before an unfinished append, from its journal; ``None`` when no append is unfinished."""
    try:
        return int(journal_path(table).read_text(encoding="ascii").strip())
    except (OSError, ValueError):  # no journal; an unreadable one is never written (it is written atomically)
        return None


def read_columns_and_rows(path: str | os.PathLike[str]) -> tuple[list[str], list[dict[str, Any]]]:
    """The header and the rows of a results table; ``([], [])`` if it does not exist yet.

    Parameters
    ----------
    path : str or os.PathLike
        The table: a CSV file, or an ``.xlsx`` workbook (needs openpyxl).

    Returns
    -------
    tuple[list[str], list[dict]]
        The columns in the file's order, and one dict per row. A CSV table's
        values are the strings of the file (an empty cell is ``""``); a
        workbook's are what openpyxl reads (an empty cell is ``""``). Bytes
        of an unfinished append (see the module docstring) are left out.

    Raises
    ------
    ImportError
        A workbook without openpyxl installed, saying what to install.
    """
    path = Path(path)
    if not path.exists():
        return [], []
    if is_workbook(path):
        import pandas as pd

        try:
            df = pd.read_excel(path, dtype=object)
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(f"results table '{path}': reading .xlsx needs openpyxl (pip install openpyxl)") from exc
        df = df.where(df.notna(), "")
        return [str(c) for c in df.columns], df.to_dict("records")
    data = path.read_bytes()
    committed = _committed_length(path)
    if committed is not None:
        data = data[:committed]
    reader = csv.DictReader(io.StringIO(data.decode("utf-8"), newline=""))
    rows = list(reader)
    return list(reader.fieldnames or []), rows


def read_table(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The rows of a results table (CSV or .xlsx); ``[]`` if it does not exist yet (see :func:`read_columns_and_rows`)."""
    return read_columns_and_rows(path)[1]


def done_cells(rows: Iterable[Mapping[str, Any]]) -> set[str]:
    """Cell ids present in a table."""
    return {str(r["cell"]) for r in rows if r.get("cell")}


def cell_rows(run_config: Mapping[str, Any], cell: str, metrics_csv: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """A finished run's table rows: its ``metrics.csv`` rows after the cell id, its config keys and provenance."""
    identity = {c: run_config.get(c) for c in CONFIG_COLUMNS}
    config_json = Path(metrics_csv).with_name("config.json")
    run_provenance = json.loads(config_json.read_text()).get("provenance", {}) if config_json.exists() else {}
    return [
        {"cell": cell, **identity, **row_provenance(run_provenance, int(row["node"])), **row}
        for row in read_metrics(metrics_csv)
    ]


def append_cell(
    table: str | os.PathLike[str], run_config: Mapping[str, Any], cell: str, metrics_csv: str | os.PathLike[str]
) -> int:
    """Add a finished run's ``metrics.csv`` rows to ``table`` without risking the rows before them; return the rows added.

    A CSV table in today's columns gets the rows appended (see the module
    docstring: a journal makes an append cut short undo itself); a workbook,
    a new table or one in other columns is written whole, atomically.
    """
    table = Path(table)
    new = cell_rows(run_config, cell, metrics_csv)
    if not is_workbook(table):
        _roll_back(table)
        if _appendable(table):
            _append_csv(table, csv_text(new, TABLE_COLUMNS).split("\n", 1)[1])
            return len(new)
    write_table(table, read_table(table) + new)
    return len(new)


def _roll_back(table: Path) -> None:
    """Undo an append to ``table`` that was cut short: truncate it to the length its journal holds, drop the journal."""
    committed = _committed_length(table)
    if committed is not None and table.exists():
        with open(table, "r+b") as fh:
            fh.truncate(committed)
            fh.flush()
            os.fsync(fh.fileno())
    journal_path(table).unlink(missing_ok=True)


def _appendable(table: Path) -> bool:
    """Whether rows can be appended to ``table``: a CSV file with today's header that ends in a newline."""
    try:
        with open(table, "rb") as fh:
            header = fh.readline().decode("utf-8").rstrip("\r\n")
            fh.seek(-1, os.SEEK_END)
            last = fh.read(1)
    except (OSError, UnicodeDecodeError):  # absent, empty, unreadable: written whole
        return False
    return header == csv_text([], TABLE_COLUMNS).rstrip("\n") and last == b"\n"


def _append_csv(table: Path, text: str) -> None:
    """Append ``text`` (whole CSV lines) to ``table`` between writing its journal and removing it."""
    size = table.stat().st_size
    atomic_write_text(journal_path(table), f"{size}\n")
    with open(table, "ab") as fh:
        fh.write(text.encode("utf-8"))
        fh.flush()
        os.fsync(fh.fileno())
    journal_path(table).unlink()


def write_table(path: str | os.PathLike[str], rows: Sequence[Mapping[str, Any]]) -> None:
    """Write the whole table atomically (CSV, or .xlsx by extension).

    The workbook is rendered in memory and written by the one atomic writer,
    so an .xlsx table is as safe from a crash as a CSV one.
    """
    path = Path(path)
    if is_workbook(path):
        import pandas as pd

        df = pd.DataFrame(list(rows), columns=list(TABLE_COLUMNS))
        for col in TABLE_COLUMNS:
            if col not in TEXT_COLUMNS:
                df[col] = pd.to_numeric(df[col].replace("", None), errors="coerce")
        buf = io.BytesIO()
        df.to_excel(buf, index=False)  # a buffer has no extension: pandas writes xlsx
        atomic_write_bytes(path, buf.getvalue())
    else:
        atomic_write_text(path, csv_text(rows, TABLE_COLUMNS))
