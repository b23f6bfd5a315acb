"""Run config: defaults agree with pyproject.toml; bad values fail with key, value and what is allowed."""

from __future__ import annotations

import tomllib

import pytest

from flower_dl.config import ConfigError, RunConfig, defaults
from flower_dl.server.app import build_topology

from .conftest import ROOT


def test_pyproject_defaults_match_config() -> None:
    with open(ROOT / "pyproject.toml", "rb") as fh:
        app_config = tomllib.load(fh)["tool"]["flwr"]["app"]["config"]
    assert app_config == defaults()


def test_defaults_follow_the_study() -> None:
    cfg = RunConfig()
    assert (cfg.num_nodes, cfg.edges, cfg.digits_per_node, cfg.model) == (5, "0-1,0-2,0-3,2-4", 3, "mlp")
    assert (cfg.num_server_rounds, cfg.local_epochs, cfg.share_ratio) == (10, 3, 0.1)
    assert (cfg.lr, cfg.momentum, cfg.batch_size) == (0.01, 0.5, 64)


BAD = [
    ({"topology": "hypercube"}, "topology", "'hypercube'", "allowed: edges, ring"),
    ({"strategy": "gossip"}, "strategy", "'gossip'", "allowed: decentralized, fedavg"),
    ({"model": "resnet"}, "model", "'resnet'", "allowed: mlp, cnn"),
    ({"dataset": "cifar"}, "dataset", "'cifar'", "allowed: mnist-5k, mnist, fashion-mnist"),
    ({"partitioner": "shards"}, "partitioner", "'shards'", "allowed: digits-per-node"),
    ({"mixing": "max-degree"}, "mixing", "'max-degree'", "allowed: metropolis, uniform"),
    ({"exchange-mode": "unicast"}, "exchange-mode", "'unicast'", "allowed: broadcast, per-neighbour"),
    ({"digits-per-node": 0}, "digits-per-node", "0", "1..10"),
    ({"digits-per-node": 11}, "digits-per-node", "11", "1..10"),
    ({"digits-per-node": 2.5}, "digits-per-node", "2.5", "integer"),
    ({"share-ratio": 1.5}, "share-ratio", "1.5", "[0, 1]"),
    ({"share-ratio": -0.1}, "share-ratio", "-0.1", "[0, 1]"),
    ({"share-ratio": "lots"}, "share-ratio", "'lots'", "a number"),
    ({"lr": 0}, "lr", "0", "> 0"),
    ({"num-server-rounds": 0}, "num-server-rounds", "0", ">= 1"),
    ({"local-epochs": 0}, "local-epochs", "0", ">= 1"),
    ({"batch-size": 0}, "batch-size", "0", ">= 1"),
    ({"dirichlet-alpha": 0.0}, "dirichlet-alpha", "0.0", "> 0"),
    ({"edge-prob": 1.5}, "edge-prob", "1.5", "[0, 1]"),
    ({"momentum": 1.0}, "momentum", "1.0", "[0, 1)"),
    ({"num-nodes": True}, "num-nodes", "True", "integer"),
    ({"shares": 0.1}, "shares", "unknown run-config key", "share-ratio"),
    ({"exchange-encryption": "yes"}, "exchange-encryption", "'yes'", "true or false"),
    ({"proximal-mu": -1.0}, "proximal-mu", "-1.0", ">= 0"),
    ({"round-timeout": 0}, "round-timeout", "0", "> 0"),
    ({"seed": -1}, "seed", "-1", "0..4294967295"),
    ({"degree": 0}, "degree", "0", ">= 1"),
    ({"run-name": "a/b"}, "run-name", "'a/b'", "no '/'"),
    ({"mia-reference-models": -1}, "mia-reference-models", "-1", "integer >= 0"),
    ({"mia-reference-models": 1.5}, "mia-reference-models", "1.5", "an integer"),
    ({"mia-every": 0}, "mia-every", "0", "integer >= 1"),
    ({"dp-clip": 0.0}, "dp-clip", "0.0", "> 0"),
    ({"dp-clip": -1.0}, "dp-clip", "-1.0", "> 0"),
    ({"dp-noise-multiplier": -0.5}, "dp-noise-multiplier", "-0.5", ">= 0"),
    ({"dp-delta": 0.0}, "dp-delta", "0.0", "(0, 1)"),
    ({"dp-delta": 1.0}, "dp-delta", "1.0", "(0, 1)"),
    ({"central-dp-noise-multiplier": -1.0}, "central-dp-noise-multiplier", "-1.0", ">= 0"),
    ({"central-dp-clip": 0.0}, "central-dp-clip", "0.0", "> 0"),
    ({"central-dp-clip": float("inf")}, "central-dp-clip", "inf", "a finite number"),
    ({"central-dp-noise-multiplier": 1.0}, "central-dp-noise-multiplier", "'decentralized'", "fedavg, fedprox"),
    (
        {"central-dp-noise-multiplier": 1.0, "strategy": "krum"},
        "central-dp-noise-multiplier",
        "'krum'",
        "FedAvg's mean",
    ),
]


@pytest.mark.parametrize(("override", "key", "value", "allowed"), BAD)
def test_bad_values_are_refused_with_key_value_and_allowed(override, key, value, allowed) -> None:
    with pytest.raises(ConfigError) as info:
        RunConfig.from_run_config({**defaults(), **override})
    msg = str(info.value)
    assert msg.startswith(f"{key}:"), msg
    assert value in msg and allowed in msg, msg


BAD_TOPOLOGY = [
    ({"edges": "0-1,0-7"}, "edges", "'0-7'", "0..4"),
    ({"edges": "0-1,1-1"}, "edges", "'1-1'", "self-loop"),
    ({"edges": "0-1,a-b"}, "edges", "'a-b'", "i-j"),
    ({"edges": "0-1,2-3,3-4"}, "edges", "'0-1,2-3,3-4' gives a disconnected graph", "{0, 1} and {2, 3, 4}"),
    ({"num-nodes": 6}, "edges", "'0-1,0-2,0-3,2-4'", "{5}"),  # the 5-node study tree on 6 nodes
    ({"num-nodes": 100000}, "edges", "names only nodes 0..4, but num-nodes is 100000", "another topology"),
    ({"topology": "torus", "num-nodes": 7}, "num-nodes", "7", "9, 12"),
    ({"topology": "k-regular", "degree": 3}, "degree", "3", "allowed"),
    ({"topology": "ring", "num-nodes": 2}, "num-nodes", "2", ">= 3"),
]


@pytest.mark.parametrize(("override", "key", "value", "allowed"), BAD_TOPOLOGY)
def test_bad_topologies_are_refused_by_the_run_config(override, key, value, allowed) -> None:
    """Checked once, when the run config is read (before anything starts), naming the key and its value."""
    with pytest.raises(ValueError) as info:
        RunConfig.from_run_config({**defaults(), **override})
    msg = str(info.value)
    assert msg.startswith(f"{key}:") and value in msg and allowed in msg, msg
    assert "\n" not in msg and len(msg) < 300, msg


def test_a_valid_topology_builds() -> None:
    topology = build_topology(RunConfig(topology="torus", num_nodes=9))
    assert topology.description["num-nodes"] == 9 and topology.neighbours[0] == [1, 2, 3, 6]
