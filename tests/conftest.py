"""Shared fixtures: the repository root, a helper to run the ``flower-dl`` command, an in-process grid, replies.

Tests that start Flower, Ray or SuperNode processes are marked ``e2e``; ``pytest -m "not e2e"`` is the quick loop.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from flwr.app import Context, Error, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from flower_dl import protocol
from flower_dl.config import RunConfig
from flower_dl.node import app as client_app

ROOT = Path(__file__).resolve().parents[1]

E2E = (
    "e2e: starts Flower, Ray or SuperNode processes (flwr run / flower-superlink / flower-supernode / ray start / "
    "the flower-dl CLI that launches them); deselect with -m 'not e2e' for a quick loop"
)
STARTS_FLOWER = ("run", "sweep", "deploy-local")
"""The ``flower-dl`` commands that start Flower once their checks pass (a refusal exits 2 before anything starts)."""
_in_e2e_test = False
"""Whether the test being set up or run is marked ``e2e`` (:func:`run_cli` refuses to start Flower otherwise)."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", E2E)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test that uses ``sim_two_rounds`` (a real simulation) must be marked ``e2e``: collection fails otherwise."""
    unmarked = [
        item.nodeid
        for item in items
        if "sim_two_rounds" in getattr(item, "fixturenames", ()) and item.get_closest_marker("e2e") is None
    ]
    if unmarked:
        raise pytest.UsageError(
            "these tests use the sim_two_rounds fixture, a real Flower simulation, but are not marked "
            f"@pytest.mark.e2e: {', '.join(unmarked)}"
        )


def pytest_runtest_setup(item: pytest.Item) -> None:
    global _in_e2e_test  # set before any fixture of the test (sim_two_rounds, session-scoped, calls run_cli)
    _in_e2e_test = item.get_closest_marker("e2e") is not None


def python_output(code: str, timeout: float = 120) -> str:
    """What ``python -c code`` prints in a fresh interpreter (e.g. which modules an import pulls in)."""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def run_cli(*args: str, timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``flower-dl`` (this environment's) from the repository root (``env``: extra variables).

    ``run``, ``sweep`` or ``deploy-local`` past its checks (any exit code but 2) fails a test not marked ``e2e``.
    """
    proc = subprocess.run(
        [sys.executable, "-m", "flower_dl.launch.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    if args and args[0] in STARTS_FLOWER and proc.returncode != 2 and not _in_e2e_test:
        pytest.fail(
            f"flower-dl {args[0]} got past its checks (exit code {proc.returncode}), so it started Flower: "
            "mark the test @pytest.mark.e2e"
        )
    return proc


@pytest.fixture(scope="session", autouse=True)
def private_cache_dir(tmp_path_factory) -> Path:
    """flower-dl's cache (decoded datasets) in a temp dir, for this process and the Flower processes it starts."""
    from flower_dl.data.datasets import CACHE_DIR_ENV

    path = tmp_path_factory.mktemp("flower-dl-cache")
    os.environ[CACHE_DIR_ENV] = str(path)
    return path


@pytest.fixture
def root() -> Path:
    return ROOT


TWO_ROUNDS = "num-server-rounds=2 local-epochs=1"


@pytest.fixture(scope="session")
def sim_two_rounds(tmp_path_factory):
    """One 5-node, 2-round simulation with defaults otherwise; shared by the tests that compare with it (all e2e)."""
    out = tmp_path_factory.mktemp("sim")
    proc = run_cli("run", "-c", f"{TWO_ROUNDS} run-name='e2e' results-dir='{out}'")
    return proc, out / "e2e"


@contextlib.contextmanager
def as_node(node_id: int):
    """Flower's task identity as node ``node_id``'s while a node's code runs here, then back to what it was."""
    before = TaskIdentity.node_id
    TaskIdentity.node_id = node_id
    try:
        yield
    finally:
        TaskIdentity.node_id = before


def reply(msg: Message, content: RecordDict | None = None, error: Error | None = None) -> Message:
    """The reply of ``msg``'s destination node: ``content`` or ``error`` (as Flower's tests' ``create_mock_reply``)."""
    if (content is None) == (error is None):
        raise TypeError("a reply has either content or an error")
    with as_node(msg.metadata.dst_node_id):
        return Message(content=content, error=error, reply_to=msg)


HANDLERS = {
    protocol.IDENTIFY: client_app.identify,
    protocol.SHARE: client_app.share,
    protocol.RECEIVE: client_app.receive,
    protocol.TRAIN: client_app.train,
    protocol.EVALUATE: client_app.evaluate,
}
"""Message type -> the ClientApp's handler (the real ones)."""


class FakeGrid:
    """Routes messages to in-process nodes (the real handlers, each node its own Context); records every content.

    Parameters
    ----------
    cfg : RunConfig
        The run's config (its ``num-nodes`` nodes are made).
    node_config : callable, optional
        partition-id -> extra node-config entries.
    tamper : callable, optional
        A server that changes what it relays: message -> None, called before delivery.
    base : int
        Flower node id of partition 0 (a new Flower run's nodes have other ids).
    """

    def __init__(self, cfg: RunConfig, node_config=None, tamper=None, base: int = 1000) -> None:
        TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 7, 1, 1
        self.tamper = tamper
        self.contexts = {
            base + pid: Context(
                run_id=7,
                node_id=base + pid,
                node_config={
                    "partition-id": pid,
                    "num-partitions": cfg.num_nodes,
                    **(node_config(pid) if node_config else {}),
                },
                state=RecordDict(),
                run_config=cfg.to_run_config(),
            )
            for pid in range(cfg.num_nodes)
        }
        self.seen: list[RecordDict] = []

    def get_node_ids(self):
        return list(self.contexts)

    def send_and_receive(self, messages, timeout=None):
        replies = []
        for msg in messages:
            if self.tamper is not None:
                self.tamper(msg)
            self.seen.append(msg.content)
            node = msg.metadata.dst_node_id
            try:
                with as_node(node):
                    answer = HANDLERS[msg.metadata.message_type](msg, self.contexts[node])
            except Exception as err:  # as Flower does: the node's error becomes an error reply
                answer = reply(msg, error=Error(code=0, reason=str(err)))
            if not answer.has_error():
                self.seen.append(answer.content)
            assert answer.metadata.src_node_id == node
            replies.append(answer)
        return replies


@pytest.fixture
def task_identity():
    """Flower's task identity as a ServerApp's (an in-process grid switches it to each node's while it runs one)."""
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 7, 1, 1
    yield


@pytest.fixture
def batchnorm_model(tmp_path: Path, monkeypatch) -> str:
    """The import path of a user's MLP with a BatchNorm layer (what DP-SGD and central DP refuse), importable."""
    (tmp_path / "bn_nets.py").write_text(
        "from torch import nn\n\n"
        "def bn(input_shape, num_classes):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.BatchNorm1d(32), nn.ReLU(),\n"
        "                         nn.Linear(32, num_classes))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return "bn_nets:bn"


def assert_no_run_folder(results_dir: Path) -> None:
    """A run refused before training made no run folder; its events say it ended with an error."""
    if not results_dir.exists():
        return
    assert [p.name for p in results_dir.iterdir()] == ["events.jsonl"], list(results_dir.iterdir())
    events = [json.loads(line) for line in (results_dir / "events.jsonl").read_text().splitlines()]
    assert events[-1]["event"] == "run-finished" and events[-1]["error"], events[-1]
    assert not any(e["event"] == "round-started" for e in events)
