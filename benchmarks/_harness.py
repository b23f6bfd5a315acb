"""Shared helpers of the benchmark scripts (not a benchmark itself).

* :class:`TreeMemorySampler`: a thread that samples, every ``interval``
  seconds, the summed resident memory of a process tree read through
  :mod:`psutil`, and keeps the peak.
* :func:`timed_simulation`: one simulation (flower-dl, or another app folder
  such as ``floor_app/``, Flower's floor) launched through the
  package's own path (``flower_dl.launch.local_superlink`` +
  ``flower_dl.launch.run_app``), every output line time-stamped on arrival, and the
  figures derived from those lines (start-up, per-round time), read with
  :mod:`flower_dl.launch.flwr_output` as the command line reads them.

Which processes count as "the tree"
    Every descendant of this process (by parent pid), plus every process in a
    *session* that such a descendant leads or belongs to, other than this
    process's own session. The session rule is needed because Ray's worker
    processes (``ray::ClientAppActor``) are re-parented to init while they stay
    in the session of Flower's ``flower-superexec``; ``local_superlink`` and
    ``run_app`` start their processes in new sessions, so nothing unrelated is
    counted (another experiment on the same machine lives in other sessions).

Memory figures
    ``rss``: the sum of the processes' RSS (psutil's ``memory_info``). Pages shared
    between processes (forked Ray workers, the same shared libraries) count once
    per process, so this is an upper bound of the memory the tree really uses.
    ``pss``: the sum of their PSS (psutil's ``memory_full_info``), which splits each
    shared page among its sharers; the sum is what the tree costs the machine.
    Reading PSS makes the kernel walk every page table (~0.1 s for a few GiB),
    so it is sampled only every ``pss_interval`` seconds (default 2 s) and its
    peak may miss short spikes; RSS is sampled every ``interval`` (0.2 s, a few ms
    each time).
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from flower_dl.launch import flwr_output
from flower_dl.launch.watchdog import proc_table

MIB = 1024 * 1024
APP_DIR = Path(__file__).resolve().parents[1]
"""The flower-dl app folder (the repository root, which holds pyproject.toml)."""
FLOOR_APP_DIR = Path(__file__).resolve().parent / "floor_app"
"""Flower's floor: a minimal app that sends the model's bytes to every node and back each round."""


# ------------------------------------------------------------------- memory
def _rss_bytes(pid: int) -> int:
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except (psutil.Error, OSError):
        return 0


def _pss_bytes(pid: int) -> int:
    try:
        return int(getattr(psutil.Process(pid).memory_full_info(), "pss", 0))
    except (psutil.Error, OSError):
        return 0


def _is_own_watchdog(pid: int, parent: int) -> bool:
    """Whether ``pid`` runs ``python -m flower_dl.launch.watchdog --parent PARENT`` (see :mod:`flower_dl.launch.watchdog`)."""
    try:
        argv = psutil.Process(pid).cmdline()
    except (psutil.Error, OSError):
        return False
    return argv[1:5] == ["-m", "flower_dl.launch.watchdog", "--parent", str(parent)]


class TreeMemorySampler(threading.Thread):
    """Peak summed RSS (and PSS) of a process tree, sampled every ``interval`` s.

    Use as a context manager around the work to measure::

        with TreeMemorySampler() as mem:
            ...
        mem.peak_rss, mem.peak_pss, mem.top()

    ``include_root``: count the root process itself (default: descendants only).
    ``tree=False``: the root process alone (e.g. a single-process loop).
    """

    def __init__(
        self,
        root: int | None = None,
        interval: float = 0.2,
        include_root: bool = False,
        tree: bool = True,
        pss_interval: float = 2.0,
        on_sample: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__(daemon=True, name="tree-memory-sampler")
        self.root = os.getpid() if root is None else root
        self.interval = interval
        self.pss_interval = pss_interval
        self.on_sample = on_sample
        self._last_pss = -float("inf")
        self.include_root = include_root or not tree
        self.tree = tree
        self.own_session = os.getsid(self.root)
        self.sessions: set[int] = set()
        self.peak_rss = 0
        self.peak_pss = 0
        self.peak_processes = 0
        self.samples = 0
        self.per_process: dict[int, tuple[str, int]] = {}  # pid -> (name, peak RSS)
        self._names: dict[int, str] = {}
        self._stop_event = threading.Event()

    def members(self) -> list[int]:
        """Pids of the processes counted now (see the module docstring)."""
        if not self.tree:
            self._names = {self.root: "self"}
            return [self.root]
        table = proc_table()
        children: dict[int, list[int]] = {}
        for pid, (ppid, _sid, _state, _name) in table.items():
            children.setdefault(ppid, []).append(pid)
        found, todo = set(), [self.root]
        while todo:
            pid = todo.pop()
            for child in children.get(pid, ()):
                if child not in found:
                    found.add(child)
                    todo.append(child)
        self.sessions |= {table[p][1] for p in found if table[p][1] not in (0, self.own_session)}
        found |= {pid for pid, (_pp, sid, _st, _n) in table.items() if sid in self.sessions}
        found.discard(self.root)
        if self.include_root:
            found.add(self.root)
        self._names = {pid: table[pid][3] for pid in found if pid in table}
        return sorted(found)

    def member_names(self, skip_watchdog: bool = False) -> list[str]:
        """Names of the processes counted now (e.g. to find processes left after a run).

        ``skip_watchdog``: leave out this process's :mod:`flower_dl.launch.watchdog`,
        which the launcher starts with the first run and which
        lives as long as this process (so is never a run's left-over).
        """
        pids = self.members()
        if skip_watchdog:
            pids = [p for p in pids if not _is_own_watchdog(p, self.root)]
        return sorted(f"{self._names.get(p, '?')}[{p}]" for p in pids)

    def sample(self) -> None:
        pids = self.members()
        rss_total = 0
        for pid in pids:
            rss = _rss_bytes(pid)
            rss_total += rss
            if rss > self.per_process.get(pid, ("", 0))[1]:
                self.per_process[pid] = (self._names.get(pid, "?"), rss)
        now = time.monotonic()
        if now - self._last_pss >= self.pss_interval:
            self._last_pss = now
            self.peak_pss = max(self.peak_pss, sum(_pss_bytes(pid) for pid in pids))
        self.samples += 1
        self.peak_rss = max(self.peak_rss, rss_total)
        self.peak_processes = max(self.peak_processes, len(pids))
        if self.on_sample is not None:
            self.on_sample(rss_total)

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.sample()
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()

    def __enter__(self) -> TreeMemorySampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def top(self, n: int = 5) -> list[dict[str, Any]]:
        """The ``n`` processes with the largest peak RSS: name, pid, peak RSS in MiB."""
        rows = sorted(self.per_process.items(), key=lambda kv: -kv[1][1])[:n]
        return [{"name": name, "pid": pid, "peak-rss-mib": round(rss / MIB, 1)} for pid, (name, rss) in rows]

    def figures(self) -> dict[str, Any]:
        return {
            "peak-rss-mib": round(self.peak_rss / MIB, 1),
            "peak-pss-mib": round(self.peak_pss / MIB, 1),
            "peak-processes": self.peak_processes,
            "memory-samples": self.samples,
            "largest-processes": self.top(),
        }


def own_rss() -> int:
    """Current RSS of this process, in bytes."""
    return _rss_bytes(os.getpid())


def wait_for_exit(sampler: TreeMemorySampler, timeout: float = 60.0) -> tuple[float, list[str]]:
    """Wait until no process of the sampled tree is left (Ray's actors and Flower's
    SuperExec exit a few seconds after the SuperLink is stopped).

    Returns the seconds waited and what was still alive at the timeout. Waiting
    keeps one run's teardown from overlapping the next measurement. This
    process's :mod:`flower_dl.launch.watchdog` is not waited for: it outlives every
    run by design (its memory is counted in the runs' figures all the same).
    """
    started = time.monotonic()
    while True:
        left = sampler.member_names(skip_watchdog=True)
        if not left or time.monotonic() - started >= timeout:
            return time.monotonic() - started, left
        time.sleep(0.5)


# --------------------------------------------------------------- simulation
@dataclass
class SimulationTiming:
    """What one timed simulation gave."""

    rc: int
    status: str
    superlink_start_s: float
    startup_s: float | None
    """run_app() called -> the "[ROUND 1/" line arrived."""
    strategy_s: float | None
    """Flower's own "Strategy execution finished in X s" (measured inside the ServerApp)."""
    round_arrivals_s: list[float] = field(default_factory=list)
    """Arrival of each "[ROUND r/" line and of the "finished" line, seconds after run_app()."""
    total_s: float = 0.0
    """run_app() called -> run_app() returned (includes writing results and shutting the run down)."""
    results_folder: Path | None = None
    log: list[tuple[float, str]] = field(default_factory=list)

    @property
    def startup_total_s(self) -> float | None:
        """The start-up a user waits for: the SuperLink's (and Ray head's) start + run_app() -> "[ROUND 1/"."""
        return None if self.startup_s is None else self.superlink_start_s + self.startup_s

    @property
    def ok(self) -> bool:
        return self.rc == 0 and self.status == "finished:completed" and self.strategy_s is not None

    def round_durations(self) -> list[float]:
        """Per-round wall times from consecutive line arrivals (resolution ~0.5 s: log streaming)."""
        t = self.round_arrivals_s
        return [b - a for a, b in itertools.pairwise(t)]

    def tail(self, n: int = 40) -> str:
        return "".join(line for _t, line in self.log[-n:])


def timed_simulation(
    overrides: dict[str, Any],
    workdir: Path,
    *,
    num_nodes: int,
    cpus_per_node: int = 1,
    gpus_per_node: float = 0.0,
    echo: Callable[[str], None] | None = None,
    app_dir: Path = APP_DIR,
) -> SimulationTiming:
    """Run one simulation as ``flower-dl run`` does; time it from its output lines.

    ``app_dir`` is the Flower app to run: flower-dl (the default) or another
    app folder, such as ``benchmarks/floor_app`` (:data:`FLOOR_APP_DIR`),
    whose ServerApp logs the same ``[ROUND r/R]`` and ``Strategy execution
    finished`` lines.

    A private SuperLink is started in ``workdir`` (its start time is reported
    apart), then ``run_app`` runs ``flwr run --stream``; each line it prints is
    stamped with ``time.monotonic()`` when it arrives here. Lines reach us
    through Flower's log streaming (uploaded every 0.2 s, polled every 0.5 s),
    so line-arrival times carry up to ~0.7 s of latency; the strategy time is
    taken from Flower's own in-process figure instead.
    """
    from flower_dl.launch import local_superlink, run_app

    t_link = time.monotonic()
    log: list[tuple[float, str]] = []
    with local_superlink(workdir) as env:
        t0 = time.monotonic()

        def on_line(line: str) -> None:
            log.append((time.monotonic() - t0, line))
            if echo is not None:
                echo(line)

        rc, status = run_app(
            app_dir, overrides, env, num_supernodes=num_nodes, cpus_per_node=cpus_per_node,
            gpus_per_node=gpus_per_node, on_line=on_line,
        )  # fmt: skip
        total = time.monotonic() - t0
    superlink_start = t0 - t_link

    startup = strategy = None
    arrivals: list[float] = []
    folder = None
    for t, line in log:
        if flwr_output.round_of(line) is not None:
            if startup is None:
                startup = t
            arrivals.append(t)
        elif (seconds := flwr_output.strategy_seconds(line)) is not None:
            strategy = seconds
            arrivals.append(t)
        elif (path := flwr_output.results_folder(line)) is not None:
            folder = path
    return SimulationTiming(
        rc=rc,
        status=status,
        superlink_start_s=superlink_start,
        startup_s=startup,
        strategy_s=strategy,
        round_arrivals_s=arrivals,
        total_s=total,
        results_folder=folder,
        log=log,
    )


def machine_info() -> dict[str, Any]:
    """CPU count, load, and library versions (timings depend on them)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
    }
    for pkg in ("flwr", "torch", "numpy", "flower-dl"):
        try:
            info[pkg] = version(pkg)
        except PackageNotFoundError:
            info[pkg] = "not installed"
    return info


def progress_line(line: str) -> bool:
    """Whether a simulation's output line is one a benchmark echoes when not verbose (round starts, the end)."""
    return flwr_output.round_of(line) is not None or flwr_output.strategy_seconds(line) is not None


def fmt(value: float | None, spec: str = ".2f") -> str:
    return "n/a" if value is None else format(value, spec)


def print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    """Right-aligned columns, each as wide as its widest cell."""
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    print("  ".join(h.rjust(w) for h, w in zip(header, widths)))
    for row in rows:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))


def warn_leftovers(label: str, figures: dict[str, Any]) -> None:
    """Say which processes of a run outlived its teardown (from :func:`wait_for_exit`)."""
    if figures["processes-left-after-teardown"]:
        print(
            f"{label}: WARNING processes of the run still alive {figures['teardown-s']:.0f} s after it: "
            f"{figures['processes-left-after-teardown']}"
        )
