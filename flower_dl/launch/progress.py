"""The progress line of ``flower-dl sweep``: cells done, current round, elapsed time and ETA."""

from __future__ import annotations

import sys
import time

from flower_dl.launch import flwr_output


class Progress:
    """One status line: cells done, current round, elapsed time and ETA.

    Driven by :func:`flower_dl.launch.sweep.run_sweep`'s callbacks; on a terminal the
    line is redrawn in place, elsewhere (a log file) printed only when it changes
    much (a cell starts or ends, a round starts), so logs stay short.
    """

    def __init__(self, total: int, stream=None) -> None:
        self.total = total
        self.done = 0
        self.started = time.monotonic()
        self.cell_started = self.started
        self.round = (0, 0)
        self.label = ""
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.durations: list[float] = []

    def start_cell(self, label: str) -> None:
        """A cell starts: show its label, no round yet."""
        self.label = label
        self.round = (0, 0)
        self.cell_started = time.monotonic()
        self.show(force=True)

    def line(self, text: str) -> None:
        """An output line of the cell's run: a ``[ROUND r/R]`` line moves the round on."""
        rnd = flwr_output.round_of(text)
        if rnd is not None:
            self.round = rnd
            self.show(force=not self.tty)

    def finish_cell(self) -> None:
        """A cell ended (completed or failed): it counts towards the ETA."""
        self.durations.append(time.monotonic() - self.cell_started)
        self.done += 1
        self.show(force=True)

    def eta(self) -> float | None:
        """Seconds left, from the mean time of the cells done; ``None`` before the first."""
        if not self.durations:
            return None
        remaining = self.total - self.done
        return remaining * (sum(self.durations) / len(self.durations))

    def show(self, force: bool = False) -> None:
        """Draw the line (``force``: also when the stream is not a terminal)."""
        width = 20
        filled = int(width * self.done / max(self.total, 1))
        bar = "#" * filled + "-" * (width - filled)
        rnd = f"round {self.round[0]}/{self.round[1]}" if self.round[1] else "starting"
        eta = self.eta()
        text = (
            f"[{bar}] {self.done}/{self.total} cells | {self.label} {rnd} | "
            f"elapsed {_fmt(time.monotonic() - self.started)} | ETA {_fmt(eta) if eta is not None else '?'}"
        )
        if self.tty:
            self.stream.write("\r\033[K" + text)
        elif force:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the line on a terminal, so what is printed next starts on its own."""
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _fmt(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"
