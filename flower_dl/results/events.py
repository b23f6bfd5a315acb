"""The control plane: run, phase and cell events the ServerApp appends to ``<results-dir>/events.jsonl``.

One JSON object a line: ``time`` (Unix seconds, wall clock, so that a caller in another process can
compare it with its own launch time), ``event`` (one of :data:`KINDS`), ``flower-run-id``, and per event
``cell`` (the run config's id), ``round``, ``folder``, ``error``, ``index`` / ``of`` (a sweep's cell
order). ``flower-dl sweep`` decides from these events which cells finished, and
``benchmarks/bench_startup.py`` takes a run's phases from them; the log lines the ServerApp also writes
are for people only.

Each event is one ``write`` of one line to a file opened for appending, so the events of two runs sharing
a results folder interleave by line, never inside one; a reader takes complete lines only
(:class:`EventReader`).
"""

from __future__ import annotations

import json
import os
import time
from logging import WARNING
from pathlib import Path
from typing import Any

from flwr.common.logger import log

EVENTS_FILE = "events.jsonl"
"""The events file's name, in the run's ``results-dir``."""

KINDS: tuple[str, ...] = (
    "run-started",  # the ServerApp has read its config (of: the cells it will run)
    "cell-started",  # a run config (a sweep's cell, or the one run) begins
    "nodes-discovered",
    "exchange-finished",
    "round-started",
    "round-finished",
    "cell-finished",  # its results folder is complete (folder)
    "cell-failed",  # error
    "run-finished",  # the ServerApp ends (error, if it failed)
)
"""The events, in the order a run records them."""


class EventLog:
    """Appends the events of one Flower run to ``<results_dir>/events.jsonl``.

    Parameters
    ----------
    results_dir : str or path
        The run's ``results-dir`` (made if missing: the events of a run refused before training are kept).
    flower_run_id : int or None
        Flower's id of the run, on every event.
    """

    def __init__(self, results_dir: str | os.PathLike[str], flower_run_id: int | None = None) -> None:
        self.path = Path(results_dir).expanduser() / EVENTS_FILE
        self.flower_run_id = flower_run_id

    def record(self, event: str, **fields: Any) -> None:
        """Append one event (``time`` and ``flower-run-id`` added); ``fields`` are JSON-serialisable."""
        if event not in KINDS:
            raise ValueError(f"event: {event!r} is not one of {', '.join(KINDS)}")
        line = json.dumps({"time": time.time(), "event": event, "flower-run-id": self.flower_run_id, **fields})
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, (line + "\n").encode())
            finally:
                os.close(fd)
        except OSError as err:  # an unwritable results-dir is the run's own error, reported by it
            log(WARNING, "flower-dl: cannot record %s in %s: %s", event, self.path, err)


class EventReader:
    """Reads the events appended to an events file since the reader was made (older ones are another run's).

    Parameters
    ----------
    path : str or path
        The events file (it need not exist yet).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def new(self) -> list[dict[str, Any]]:
        """The complete events appended since the last call (a line still being written waits for the next)."""
        if not self.path.exists():
            return []
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            data = fh.read()
        end = data.rfind(b"\n") + 1
        self.offset += end
        return [json.loads(line) for line in data[:end].splitlines() if line.strip()]
