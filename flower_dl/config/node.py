"""The node config: a SuperNode's own settings, declared once like the run config's keys, one frozen object.

A SuperNode is started with ``--node-config "partition-id=0 num-partitions=5
..."`` (a simulation sets ``partition-id`` and ``num-partitions`` for each
simulated node); the node reads it with :meth:`NodeConfig.from_node_config`,
which checks each key (type: strict, as the run config's) and what the keys ask
of the run config (``partition-id`` in ``0..num-nodes-1``, ``num-partitions``
equal to ``num-nodes``). Keys it does not declare are left alone: a node config
may carry settings of other apps.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from flower_dl.config.schema import ConfigError, check_values, key, keys_of, required_key

_SUPERNODE_HINT = 'start the SuperNode with --node-config "partition-id=<0..num-nodes-1> num-partitions=<num-nodes>"'


@dataclass(frozen=True)
class NodeConfig:
    """Validated node config (attribute ``x_y`` is node-config key ``x-y``); each field declares its key."""

    partition_id: int = required_key(
        "the node's place in the topology (never the order of Flower node ids); every id must be present exactly "
        "once (see [Run on several machines](deployment.md#run-on-several-machines)); a simulation sets it per node",
        ge=0,
        allowed="an integer in 0..num-nodes-1",
    )
    num_partitions: int | None = key(
        None, "set by Flower's simulation; if present it must equal the run config's `num-nodes`", ge=1,
        allowed="the run config's num-nodes",
    )  # fmt: skip
    data_dir: str = key(
        "",
        "`dataset = \"folder\"`: the node's own folder; takes precedence over the run config's `data-dir` template "
        "(see [Nodes that own their data](deployment.md#nodes-that-own-their-data))",
        allowed="a folder path, or empty",
    )
    identity_key: str = key(
        "",
        "the node's own Ed25519 identity key file (`flower-dl keys`), with which it signs its exchange key; "
        "empty: it signs nothing",
        allowed="a file path, or empty",
    )
    peer_keys: str = key(
        "",
        "the file of every node's public identity (`peer-keys.txt`); a peer's exchange key whose signature does not "
        "verify is refused (see [Failures, reproducibility, privacy of the exchange]"
        "(failures-and-privacy.md#in-short)); empty: peers' keys are not verified",
        allowed="a file path, or empty",
    )

    def __post_init__(self) -> None:
        check_values(type(self), {f.name: getattr(self, f.name) for f in fields(self)})

    @classmethod
    def from_node_config(cls, node_config: Mapping[str, Any], *, num_nodes: int, node: object) -> NodeConfig:
        """Read a node's node config, checked against the run config's ``num-nodes``.

        Parameters
        ----------
        node_config : Mapping
            ``context.node_config`` (kebab-case keys; undeclared keys are ignored).
        num_nodes : int
            The run config's ``num-nodes``.
        node : object
            The node, for the messages (its Flower node id).

        Raises
        ------
        ConfigError
            ``"node config of node 7: partition-id: 5 is out of range; allowed: an integer in 0..4
            (num-nodes is 5)"``: the node, the key, the value and what is allowed.
        """
        where = f"node config of node {node}: "
        declared = {k.replace("-", "_"): v for k, v in node_config.items() if k in keys_of(cls)}
        if "partition_id" not in declared:
            raise ConfigError(
                f"{where}partition-id: missing; allowed: an integer in 0..{num_nodes - 1}; {_SUPERNODE_HINT}"
            )
        try:
            cfg = cls(**declared)
        except ConfigError as err:
            raise ConfigError(where + str(err)) from None
        if not cfg.partition_id < num_nodes:
            raise ConfigError(
                f"{where}partition-id: {cfg.partition_id!r} is out of range; allowed: an integer in "
                f"0..{num_nodes - 1} (num-nodes is {num_nodes})"
            )
        if cfg.num_partitions is not None and cfg.num_partitions != num_nodes:
            raise ConfigError(
                f"{where}num-partitions: {cfg.num_partitions!r} differs from the run config's num-nodes "
                f"({num_nodes}); allowed: {num_nodes}"
            )
        return cfg
