"""Shared fixtures: the repository root, a helper to run the ``flower-dl`` command, an in-process grid."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from flwr.app import Context, Error, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from flower_dl import client_app, protocol
from flower_dl.config import RunConfig

ROOT = Path(__file__).resolve().parents[1]


def python_output(code: str, timeout: float = 120) -> str:
    """What ``python -c code`` prints in a fresh interpreter (e.g. which modules an import pulls in)."""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def run_cli(*args: str, timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``flower-dl`` (this environment's) from the repository root (``env``: extra variables)."""
    return subprocess.run(
        [sys.executable, "-m", "flower_dl.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="session", autouse=True)
def private_cache_dir(tmp_path_factory) -> Path:
    """flower-dl's cache (decoded datasets) in a temp dir, for this process and the Flower processes it starts."""
    from flower_dl.data import CACHE_DIR_ENV

    path = tmp_path_factory.mktemp("flower-dl-cache")
    os.environ[CACHE_DIR_ENV] = str(path)
    return path


@pytest.fixture
def root() -> Path:
    return ROOT


TWO_ROUNDS = "num-server-rounds=2 local-epochs=1"


@pytest.fixture(scope="session")
def sim_two_rounds(tmp_path_factory):
    """One 5-node, 2-round simulation with defaults otherwise; shared by the tests that compare with it."""
    out = tmp_path_factory.mktemp("sim")
    proc = run_cli("run", "-c", f"{TWO_ROUNDS} run-name='e2e' results-dir='{out}'")
    return proc, out / "e2e"


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
            TaskIdentity.node_id = node
            try:
                reply = HANDLERS[msg.metadata.message_type](msg, self.contexts[node])
            except Exception as err:  # as Flower does: the node's error becomes an error reply
                reply = Message(Error(code=0, reason=str(err)), reply_to=msg)
            if not reply.has_error():
                self.seen.append(reply.content)
            assert reply.metadata.src_node_id == node
            replies.append(reply)
            TaskIdentity.node_id = 1
        return replies


@pytest.fixture
def task_identity():
    """Flower's task identity as a ServerApp's (an in-process grid switches it to each node's while it runs one)."""
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 7, 1, 1
    yield
