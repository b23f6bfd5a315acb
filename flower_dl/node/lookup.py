"""Which run config and node config a message and its context give a node, each checked once per process.

A node reads its run config from each message (:func:`run_config_of`; a
``data-dir`` in its node config takes precedence) and its node config
(:class:`flower_dl.config.NodeConfig`: ``partition-id``, ``data-dir``,
``identity-key``, ...) from its context (:func:`node_config_of`); its place in
the topology is its node config's ``partition-id`` (:func:`partition_id_of`).
Each is kept in the per-process cache (:data:`flower_dl.node.process.CACHE`),
keyed by what it is built from.
"""

from __future__ import annotations

from collections.abc import Hashable

from flwr.app import Context, Message

from flower_dl import protocol
from flower_dl.config import NodeConfig, RunConfig
from flower_dl.node.process import CACHE

__all__ = ["node_config_of", "partition_id_of", "run_config_of"]


def _items(mapping) -> tuple[tuple[str, Hashable], ...]:
    return tuple(sorted(mapping.items()))


def node_config_of(context: Context, num_nodes: int) -> NodeConfig:
    """The node's validated node config (once per process and node config), checked against ``num-nodes``."""
    key = ("node-config", _items(context.node_config), num_nodes, context.node_id)
    return CACHE.get(
        key, lambda: NodeConfig.from_node_config(context.node_config, num_nodes=num_nodes, node=context.node_id)
    )


def run_config_of(msg: Message, context: Context) -> RunConfig:
    """The validated run config a message carries (once per process and config).

    A ``data-dir`` in the node config (a SuperNode's own data folder) takes
    precedence over the run config's.
    """
    run_config = protocol.run_config_of(msg)

    def build() -> RunConfig:
        cfg = RunConfig.from_run_config(run_config)
        node_dir = node_config_of(context, cfg.num_nodes).data_dir
        return cfg.replace(data_dir=node_dir) if node_dir else cfg

    return CACHE.get(("config", _items(run_config), _items(context.node_config), context.node_id), build)


def partition_id_of(context: Context, cfg: RunConfig) -> int:
    """The node's topology position, from its node config, checked against ``num-nodes``."""
    return node_config_of(context, cfg.num_nodes).partition_id
