"""The config schema: one declaration per key makes the checks, the defaults and the docs' tables.

The docs' tables are the schema's (regenerated, never edited by hand), the schema's defaults are
pyproject.toml's, every key is documented; the node config is checked like the run config, each
error naming the node, the key, the value and what is allowed; validation imports no torch or Flower.
"""

from __future__ import annotations

import dataclasses
import tomllib

import pytest
from flwr.app import Context, RecordDict

from flower_dl import config
from flower_dl.config import ConfigError, NodeConfig, RunConfig, defaults, reference_markdown
from flower_dl.config.reference import SECTIONS, generated_sections, update_docs
from flower_dl.config.schema import keys_of, reference_rows

from .conftest import ROOT, python_output

DOCS = ROOT / "docs" / "configuration.md"


def test_the_docs_tables_are_the_schemas() -> None:
    text = DOCS.read_text()
    sections = generated_sections(text)
    assert set(sections) == set(SECTIONS)
    for section, table in sections.items():
        assert table == reference_markdown(section), f"run python -m flower_dl.config --write ({section})"
    assert update_docs(text) == text


def test_the_schemas_defaults_are_pyprojects() -> None:
    with open(ROOT / "pyproject.toml", "rb") as fh:
        app_config = tomllib.load(fh)["tool"]["flwr"]["app"]["config"]
    declared = {key: default for key, default, _, _ in reference_rows(RunConfig)}
    assert list(app_config) == list(declared)  # same keys, in the same order
    for key, value in app_config.items():
        assert declared[key] == value and type(declared[key]) is type(value), key
    assert declared == defaults()


def test_every_key_is_documented() -> None:
    text = DOCS.read_text()
    for cls in (RunConfig, NodeConfig):
        for key, (_, spec) in keys_of(cls).items():
            assert spec.description and "\n" not in spec.description and "|" not in spec.description, key
            assert text.count(f"| `{key}` |") >= 1, key


def test_regenerating_prints_the_tables() -> None:
    out = python_output("import runpy; runpy.run_module('flower_dl.config', run_name='__main__')", timeout=60)
    assert out == "\n".join(reference_markdown(section) for section in SECTIONS).rstrip("\n")


def test_validation_imports_no_torch_and_no_flower() -> None:
    code = (
        "import sys\n"
        "from flower_dl.config import RunConfig, NodeConfig\n"
        "RunConfig.from_run_config({'topology': 'k-regular', 'degree': 2, 'strategy': 'fedavg'})\n"
        "NodeConfig.from_node_config({'partition-id': 1}, num_nodes=5, node=3)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'flwr', 'networkx')))\n"
    )
    assert python_output(code, timeout=60) == "[]"


def test_run_config_keeps_the_values_it_is_given() -> None:
    """An integer for a number key stays an integer: what is stored (and its cell id) is what was given."""
    cfg = RunConfig.from_run_config({"lr": 1, "share-ratio": 0})
    assert cfg.lr == 1 and type(cfg.lr) is int and type(cfg.share_ratio) is int
    assert [f.type for f in dataclasses.fields(RunConfig)][:3] == ["int", "str", "str"]
    assert config.RunConfig is RunConfig and hash(cfg) == hash(RunConfig.from_run_config({"lr": 1, "share-ratio": 0}))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"qsgd-levels": 0}, "qsgd-levels: 0 is out of range; allowed: an integer in 1..2147483647"),
        ({"compression": "zip"}, "compression: 'zip' is not a known compression; allowed: none, top-k"),
        ({"mixing-schedule": "epidemic", "epidemic-peers": 5}, "epidemic-peers: 5 is outside 1..num-nodes-1"),
        ({"epidemic-peers": "2"}, "epidemic-peers: '2' is not an integer; allowed: an integer in 1..num-nodes-1"),
        ({"results-dir": ""}, "results-dir: '' is not allowed; allowed: a folder path (not empty)"),
        ({"run-name": ".."}, "run-name: '..' is not allowed; allowed: a plain folder name"),
        ({"topology": "small-world", "degree": 3}, "degree: 3 is invalid for a small-world graph on 5 nodes"),
        ({"dp-clip": float("nan")}, "dp-clip: nan is not finite; allowed: a finite number > 0"),
        ({"edges": 5}, "edges: 5 is not a string; allowed: an edge list"),
    ],
)
def test_each_key_is_checked_once_with_key_value_and_allowed(override, message) -> None:
    with pytest.raises(ConfigError) as info:
        RunConfig.from_run_config(override)
    assert str(info.value).startswith(message), info.value


def test_cross_key_checks_run_once(monkeypatch) -> None:
    """The run config asks each topology check once, and never the per-key checks of the domain modules."""
    from flower_dl.config import run
    from flower_dl.topology import checks, compressed, graphs

    calls: list[str] = []
    real = graphs.check_family
    monkeypatch.setattr(run, "check_family", lambda *a, **k: (calls.append("family"), real(*a, **k))[1])
    for name in ("_check_num_nodes", "_check_degree", "_check_prob"):
        monkeypatch.setattr(checks, name, lambda *a, _n=name: calls.append(_n))
        monkeypatch.setattr(graphs, name, lambda *a, _n=name: calls.append(_n))
    monkeypatch.setattr(compressed, "check_compression", lambda *a: calls.append("compression"))
    RunConfig(topology="small-world", num_nodes=6, degree=2)
    assert calls == ["family"]


# ------------------------------------------------------------------ node config
def test_node_config_reads_what_a_supernode_is_given() -> None:
    cfg = NodeConfig.from_node_config(
        {"partition-id": 2, "num-partitions": 5, "data-dir": "/d/2", "other-app-key": 1}, num_nodes=5, node=77
    )
    assert (cfg.partition_id, cfg.num_partitions, cfg.data_dir, cfg.identity_key, cfg.peer_keys) == (
        2,
        5,
        "/d/2",
        "",
        "",
    )
    assert NodeConfig.from_node_config({"partition-id": 0}, num_nodes=2, node=1).num_partitions is None


@pytest.mark.parametrize(
    ("node_config", "message"),
    [
        ({}, "partition-id: missing; allowed: an integer in 0..4; start the SuperNode with --node-config"),
        ({"partition-id": 5}, "partition-id: 5 is out of range; allowed: an integer in 0..4 (num-nodes is 5)"),
        ({"partition-id": -1}, "partition-id: -1 is out of range; allowed: an integer in 0..num-nodes-1"),
        ({"partition-id": "1"}, "partition-id: '1' is not an integer; allowed: an integer in 0..num-nodes-1"),
        ({"partition-id": True}, "partition-id: True is not an integer"),
        ({"partition-id": 1, "num-partitions": 4}, "num-partitions: 4 differs from the run config's num-nodes (5)"),
        ({"partition-id": 1, "peer-keys": 3}, "peer-keys: 3 is not a string; allowed: a file path, or empty"),
    ],
)
def test_node_config_errors_name_the_node_key_value_and_allowed(node_config, message) -> None:
    with pytest.raises(ConfigError) as info:
        NodeConfig.from_node_config(node_config, num_nodes=5, node=1234)
    assert str(info.value).startswith(f"node config of node 1234: {message}"), info.value


def test_a_node_reads_its_node_config_through_the_schema() -> None:
    from flower_dl.node.lookup import node_config_of, partition_id_of
    from flower_dl.node.state import Node

    cfg = RunConfig(num_nodes=3, topology="ring")
    context = Context(
        run_id=1, node_id=42, node_config={"partition-id": 1, "data-dir": "/x/1"}, state=RecordDict(), run_config={}
    )
    assert partition_id_of(context, cfg) == 1 and node_config_of(context, 3).data_dir == "/x/1"
    node = Node(context, cfg, 1)
    assert node.identity() is None and node.peer_keys() is None and node.node_config.partition_id == 1
    bad = Context(run_id=1, node_id=43, node_config={"partition-id": 3}, state=RecordDict(), run_config={})
    with pytest.raises(ConfigError, match=r"^node config of node 43: partition-id: 3 is out of range"):
        partition_id_of(bad, cfg)
