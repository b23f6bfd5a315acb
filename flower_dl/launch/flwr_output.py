"""What flower-dl reads from Flower's output: the one place that knows its wording.

``flwr run --stream`` prints ``flwr``'s own messages (``Successfully started
run 123``) and the ServerApp's log lines as Flower's console handler formats
them, the level name wrapped in ANSI colour codes::

    \\x1b[92mINFO \\x1b[0m:      [ROUND 2/10]
    \\x1b[92mINFO \\x1b[0m:      Strategy execution finished in 12.34s
    \\x1b[92mINFO \\x1b[0m:      results written to /home/me/results/run

The command line (run id, progress line), the sweep and the benchmarks all
parse these lines here, so a change in Flower's wording is fixed once. Each
function takes one line as printed (colour codes, trailing newline and all)
and returns ``None`` for any other line.
"""

from __future__ import annotations

import re
from pathlib import Path

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_RUN_ID = re.compile(r"Successfully started run (\d+)")
_ROUND = re.compile(r"\[ROUND (\d+)/(\d+)\]")
_STRATEGY = re.compile(r"Strategy execution finished in ([0-9]+(?:\.[0-9]*)?)\s*s\b")
_RESULTS = re.compile(r"results written to (\S.*?)\s*$")


def plain(line: str) -> str:
    """``line`` without ANSI escape sequences (Flower colours the level name; ``flwr`` colours its messages).

    Parameters
    ----------
    line : str
        One line as Flower printed it.

    Returns
    -------
    str
        The same text with every ``ESC [ ... letter`` sequence removed, so a
        pattern never has to allow for colour codes in the middle.
    """
    return _ANSI.sub("", line)


def run_id(line: str) -> str | None:
    """The run id of ``flwr run``'s ``Successfully started run N`` line.

    Parameters
    ----------
    line : str
        One output line.

    Returns
    -------
    str or None
        The id as text (what ``flwr ls --run-id`` takes); ``None`` on any other line.
    """
    match = _RUN_ID.search(plain(line))
    return match.group(1) if match else None


def round_of(line: str) -> tuple[int, int] | None:
    """The round a strategy's ``[ROUND r/R]`` line starts.

    Parameters
    ----------
    line : str
        One output line.

    Returns
    -------
    tuple of (int, int) or None
        ``(r, R)``: this round and the number of rounds; ``None`` on any other line.
    """
    match = _ROUND.search(plain(line))
    return (int(match.group(1)), int(match.group(2))) if match else None


def strategy_seconds(line: str) -> float | None:
    """Flower's own ``Strategy execution finished in X s``.

    The strategy times itself inside the ServerApp, from just before round 1
    to the end of the last round: unlike the arrival time of a streamed line,
    this figure carries no log-streaming latency.

    Parameters
    ----------
    line : str
        One output line.

    Returns
    -------
    float or None
        The seconds; ``None`` on any other line.
    """
    match = _STRATEGY.search(plain(line))
    return float(match.group(1)) if match else None


def results_folder(line: str) -> Path | None:
    """The folder of the ServerApp's ``results written to PATH`` line.

    Parameters
    ----------
    line : str
        One output line.

    Returns
    -------
    pathlib.Path or None
        The folder as logged (absolute, spaces kept); ``None`` on any other line.
    """
    match = _RESULTS.search(plain(line))
    return Path(match.group(1)) if match else None


# ------------------------------------------------------------------ quiet log
_LEVEL = re.compile(r"^(INFO|WARNING|ERROR|DEBUG|CRITICAL)\s*:\s?(.*)$", re.DOTALL)
_ACTOR = re.compile(r"^\((\w+) pid=\d+\)\s*")
_NOISE: tuple[re.Pattern[str], ...] = tuple(
    re.compile(p)
    for p in (
        r"^Starting logstream for run_id",
        r"^Starting Flower Simulation",
        r"^Since flwr 1\.32, default simulated SuperNodes changed",  # said whatever num-supernodes is
        r"^Federation `",
        r"^To change federation size",
        r"^\s*flwr federation simulation-config",
        r"^\[ROUND \d+/\d+\]",  # flower-dl's own progress line says more
        r"^Strategy execution finished in",
        r"^round \d+: consensus distance",
        r"^nodes by partition-id:",
        r"^aggregate_fit: parameters are clipped by value",  # Flower's central DP: once per node and round
        r"^aggregate_fit: central DP noise with",
        r"^Manually terminating ClientAppActor",
        r"^An exception was raised when processing a message by RayBackend",  # a node's error, said once below
        r"^Simulation raised an exception",
        r"ray::ClientAppActor",
        r"^Traceback \(most recent call last\)",
        r"^Exit Code: \d+",
        r"^flower-dl: the run failed:",  # flower-dl run says it once, from the run's status
        r"^\s*$",
    )
)
"""Log messages of Flower (and of flower-dl for ``-v``) that a ``flower-dl run`` user need not read: Flower's
start-up chatter, its warning about a default that does not apply (the simulation gets ``num-nodes``
SuperNodes), per-round markers the progress line replaces, the lines Flower's central-DP wrapper logs per
node and round, and a node's error as Flower repeats it with tracebacks (the run's own error line says it
once)."""


class QuietLog:
    """Which of Flower's output lines ``flower-dl run`` shows without ``-v``: flower-dl's, and warnings and errors.

    Flower's output mixes log records (``INFO :  ...``, coloured) with the
    ``flwr`` command's own lines, Python warnings, and multi-line
    tracebacks (the continuation lines carry no level). Without ``-v`` only
    log records are shown, less :data:`_NOISE`; a traceback's lines go with
    the record they continue. ``-v`` shows every line as it came.
    """

    def __init__(self) -> None:
        self.shown = 0

    def keep(self, line: str) -> bool:
        """Whether to show ``line`` (one line as printed, colour codes and newline included)."""
        text = plain(line).rstrip("\n")
        actor = _ACTOR.match(text)
        if actor:  # a node's (Ray actor's) own log line
            text = text[actor.end() :]
        match = _LEVEL.match(text)
        if match is None:
            return False  # flwr's own messages, warnings from libraries, traceback continuation lines
        level, message = match.group(1), match.group(2).strip()
        return not (level == "DEBUG" or any(p.search(message) for p in _NOISE))


def failure_reason(status: str) -> str:
    """What a failed run's status says went wrong, without Flower's wrapping (``"finished:failed (...: X)"`` -> X)."""
    inner = status.partition("(")[2].rstrip(")") if "(" in status else status
    return inner.split("exception: ", 1)[-1] if "exception: " in inner else inner
