"""The floor app of ``benchmarks/bench_scale.py``: a valid Flower app of flower-dl's MLP's size that echoes the model.

Fast: no simulation is started (``python benchmarks/bench_scale.py --quick`` runs it).
"""

from __future__ import annotations

import importlib.util
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Context, Message, RecordDict
from flwr.common.config import validate_config
from flwr.supercore.task_identity import TaskIdentity

ROOT = Path(__file__).resolve().parents[1]
FLOOR = ROOT / "benchmarks" / "floor_app"


def load(path: Path, name: str):
    """Import ``path`` as module ``name`` (the floor's modules are top-level in their own app folder)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def apps():
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 7, 1, 1  # as inside a run (makes Messages)
    server = load(FLOOR / "server_app.py", "floor_server_app")
    client = load(FLOOR / "client_app.py", "floor_client_app")
    return server, client


def test_pyproject_is_a_valid_flower_app():
    config = tomllib.loads((FLOOR / "pyproject.toml").read_text())
    ok, errors, _warnings = validate_config(config, check_module=True, project_dir=FLOOR)
    assert ok, errors


def test_model_size_is_flower_dls_mlp():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_scale
    finally:
        sys.path.pop(0)
    from flower_dl.node.models import build_model

    floats = sum(p.numel() for p in build_model("mlp", seed=0).parameters())
    default = tomllib.loads((FLOOR / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]["num-floats"]
    assert floats == bench_scale.MLP_FLOATS == default == 159_010


def test_each_node_gets_its_own_array_and_the_client_echoes_it(apps):
    server, client = apps
    model = np.arange(10, dtype=np.float32)
    first, second = (server.train_message(nid, 3, model) for nid in (1, 2))
    a, b = (m.content["arrays"]["model"] for m in (first, second))
    assert a is not b and a.numpy().tolist() == model.tolist()
    assert first.metadata.message_type == "train" and first.content["config"]["server-round"] == 3

    reply = client.train(first, Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={}))
    assert reply.content["arrays"]["model"].numpy().tolist() == model.tolist()
    assert reply.content["metrics"]["num-examples"] == 1


def test_check_replies_fails_on_a_missing_reply_or_a_wrong_size(apps):
    server, _client = apps
    replies = [server.train_message(1, 1, np.zeros(4, np.float32))]
    server.check_replies(replies, 1, "train", 4)
    with pytest.raises(RuntimeError, match="1 of 2 replies"):
        server.check_replies(replies, 2, "train", 4)
    with pytest.raises(RuntimeError, match="shapes"):
        server.check_replies(replies, 1, "train", 5)
    assert isinstance(server.query(7), Message)
