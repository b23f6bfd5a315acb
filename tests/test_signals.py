"""Whatever stops a command (Ctrl-C, SIGTERM, SIGHUP, SIGKILL), no process it started is left.

Each case starts the real command, waits until Flower's processes are up
(the SuperLink and the SuperExec it starts in a session of its own, the
process that outlives a killed parent unless something stops it), sends the
signal to the command alone, as ``kill`` does, and looks in ``/proc`` for
anything of its tree. The tree is every descendant of the command plus every
process of a session any of them was seen in: Flower's and Ray's processes
are re-parented to init once their parent is gone, but stay in their session.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flower_dl.launch.watchdog import proc_table

from .conftest import ROOT

pytestmark = pytest.mark.e2e

FAST = "num-server-rounds=1 local-epochs=1"
COMMANDS = {
    "run": lambda tmp: ["run", "-c", f"{FAST} results-dir='{tmp}'"],
    "sweep": lambda tmp: ["sweep", "-g", "share-ratio=[0.1]", "-c", FAST, "-t", str(tmp / "t.csv")],
    "deploy-local": lambda tmp: ["deploy-local", "-n", "2"],  # its own temporary folder: removed when stopped
}
INTERRUPTED = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129, signal.SIGKILL: -signal.SIGKILL}
UP = ("flower-superlin", "flower-superex")  # /proc's names are cut at 15 characters
READY = "to stop every process"
"""What ``deploy-local`` says once its SuperNodes are up (from then on a stop signal ends it normally)."""


class Tree:
    """The processes of one command's tree, as ``/proc`` shows them now (see the module docstring)."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.sessions = {root}  # started in a session of its own
        self.exclude = {0, os.getsid(0)}

    def members(self) -> dict[int, str]:
        """pid -> name of every living process of the tree; remembers the sessions seen."""
        table = proc_table()
        children: dict[int, list[int]] = {}
        for pid, (ppid, *_rest) in table.items():
            children.setdefault(ppid, []).append(pid)
        found, todo = set(), [self.root]
        while todo:
            for child in children.get(todo.pop(), ()):
                if child not in found:
                    found.add(child)
                    todo.append(child)
        self.sessions |= {table[pid][1] for pid in found} - self.exclude
        found |= {pid for pid, row in table.items() if row[1] in self.sessions}
        return {pid: table[pid][3] for pid in found if table[pid][2] != "Z"}

    def kill(self) -> None:
        """SIGKILL whatever is left (a failed case must not leak into the rest of the suite)."""
        for _ in range(50):
            left = self.members()
            if not left:
                return
            for pid in left:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)


def _default_signals() -> None:
    """In the child: SIGINT and SIGHUP as a terminal's command gets them, even if this test runs under nohup."""
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


def _wait_until_up(proc: subprocess.Popen, tree: Tree, out: Path, timeout: float = 120.0) -> None:
    """Until the SuperLink and a SuperExec run; for ``deploy-local``, until it says it is up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        names = tree.members().values()
        flower_up = all(any(name.startswith(up) for name in names) for up in UP)
        if flower_up and ("deploy-local" not in proc.args or READY in out.read_text()):
            return
        time.sleep(0.1)
    said = out.read_text()[-2000:] + out.with_name("stderr").read_text()[-2000:]
    raise AssertionError(f"Flower's processes did not start (exit code {proc.poll()}):\n{said}")


def _left_after_exit(proc: subprocess.Popen, tree: Tree, timeout: float = 20.0) -> dict[int, str]:
    """Wait for the command to exit, then up to ``timeout`` s for its tree to be gone; what is left."""
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        tree.members()  # sessions started while it stops count too
        time.sleep(0.1)
    assert proc.poll() is not None, "the command did not exit"
    deadline = time.monotonic() + timeout
    while (left := tree.members()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


@pytest.mark.parametrize("sig", list(INTERRUPTED), ids=lambda sig: sig.name)
@pytest.mark.parametrize("command", list(COMMANDS))
def test_no_process_outlives_a_stopped_command(tmp_path: Path, command: str, sig: signal.Signals) -> None:
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    ray_dirs_before = set(Path("/tmp").glob("flower-dl-ray-*"))  # Ray's folder is in /tmp whatever TMPDIR says
    with open(out, "w") as stdout, open(err, "w") as stderr:  # files: a full pipe would block the command
        proc = subprocess.Popen(
            [sys.executable, "-m", "flower_dl.launch.cli", *COMMANDS[command](tmp_path)],
            cwd=ROOT,
            stdout=stdout,
            stderr=stderr,
            env={**os.environ, "TMPDIR": str(tmp_path)},  # what a SIGKILL leaves on disk goes with tmp_path
            start_new_session=True,
            preexec_fn=_default_signals,
        )
    tree = Tree(proc.pid)
    try:
        _wait_until_up(proc, tree, out)
        proc.send_signal(sig)
        left = _left_after_exit(proc, tree)
        output = out.read_text()[-2000:] + err.read_text()[-2000:]
        assert not left, f"left running: {sorted(left.items())}\n{output}"
        # nor its temporary folders (Ray's session, the staged app), SIGKILL included: the watchdog removes them
        left_dirs = (set(Path("/tmp").glob("flower-dl-ray-*")) - ray_dirs_before) | set(tmp_path.glob("flower-dl-*"))
        assert not left_dirs, f"left on disk: {sorted(map(str, left_dirs))}\n{output}"
        expected = 0 if command == "deploy-local" and sig != signal.SIGKILL else INTERRUPTED[sig]
        assert proc.returncode == expected, output
        if sig != signal.SIGKILL:
            said = "local deployment stopped" if command == "deploy-local" else "interrupted"
            assert said in output
        if command == "run" and sig == signal.SIGTERM:
            assert "flower-dl: interrupted by SIGTERM" in err.read_text()
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(timeout=30)
        tree.kill()


def test_a_secure_local_deployment_comes_up_and_leaves_nothing_when_stopped(tmp_path: Path) -> None:
    """``deploy-local --secure``: TLS, every SuperNode registered; its keys go with its temporary folder."""
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flower_dl.launch.cli", "deploy-local", "-n", "2", "--secure"],
            cwd=ROOT, stdout=stdout, stderr=stderr, env={**os.environ, "TMPDIR": str(tmp_path)},
            start_new_session=True, preexec_fn=_default_signals,
        )  # fmt: skip
    tree = Tree(proc.pid)
    try:
        _wait_until_up(proc, tree, out)
        said = out.read_text()
        assert "TLS and SuperNode authentication, every SuperNode registered" in said, said
        logs = sorted(tmp_path.glob("flower-dl-deploy-*/supernode-*.log"))
        deadline = time.monotonic() + 30
        while not all("SuperNode ID" in log.read_text() for log in logs) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert len(logs) == 2 and all("SuperNode ID" in log.read_text() for log in logs)  # both joined
        proc.send_signal(signal.SIGTERM)
        left = _left_after_exit(proc, tree)
        assert not left, f"left running: {sorted(left.items())}"
        assert proc.returncode == 0, out.read_text()[-2000:] + err.read_text()[-2000:]
        assert not list(tmp_path.glob("flower-dl-*")), "its folder, keys included, is removed"
    finally:
        tree.kill()
