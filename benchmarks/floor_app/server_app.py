"""Flower's floor: a ServerApp that sends one model's bytes to every node and back, once per round.

No training, no strategy object, no flower-dl code: what any Flower app that
moves flower-dl's model to N nodes and back pays per round. The main:

1. waits until ``num-nodes`` nodes are connected (``grid.get_node_ids()``);
2. sends every node one ``query`` message and waits for the replies, so that
   round 1 does not include the ClientApps' first load (flower-dl's node
   discovery is such a wave too);
3. runs ``num-server-rounds`` rounds, each one ``grid.send_and_receive`` of one
   ``train`` message per node: an ArrayRecord of ``num-floats`` float32 (one
   distinct array per node, as flower-dl sends each node its own model) and a
   ConfigRecord with the round; each node replies with the same bytes.

It logs the lines Flower's ``Strategy.start`` logs and times them the same
way: ``[ROUND r/R]`` at each round's start and ``Strategy execution finished
in X s``, X from just before round 1 to after the last round.
"""

from __future__ import annotations

import time
from logging import INFO

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.common.logger import log
from flwr.serverapp import Grid, ServerApp

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Read the run config, wait for the nodes, warm them up, run the rounds."""
    num_nodes = int(context.run_config["num-nodes"])
    num_rounds = int(context.run_config["num-server-rounds"])
    num_floats = int(context.run_config["num-floats"])
    timeout = float(context.run_config["round-timeout"])
    node_ids = wait_for_nodes(grid, num_nodes, float(context.run_config["node-wait-timeout"]))
    check_replies(grid.send_and_receive([query(nid) for nid in node_ids], timeout=timeout), len(node_ids), "query")
    log(INFO, "floor: %d nodes, %d float32 (%.2f MiB) each way per node per round", num_nodes, num_floats,
        num_floats * 4 / 2**20)  # fmt: skip
    model = np.random.default_rng(0).standard_normal(num_floats, dtype=np.float32)
    t_start = time.time()
    for server_round in range(1, num_rounds + 1):
        log(INFO, "")
        log(INFO, "[ROUND %s/%s]", server_round, num_rounds)
        messages = [train_message(nid, server_round, model) for nid in node_ids]
        replies = grid.send_and_receive(messages, timeout=timeout)
        check_replies(replies, len(node_ids), "train", num_floats)
    log(INFO, "")
    log(INFO, "Strategy execution finished in %.2fs", time.time() - t_start)


def wait_for_nodes(grid: Grid, num_nodes: int, wait_timeout: float) -> list[int]:
    """The ids of ``num_nodes`` connected nodes, polled every 0.5 s for up to ``wait_timeout`` s."""
    deadline = time.monotonic() + wait_timeout
    connected = list(grid.get_node_ids())
    while len(connected) < num_nodes and time.monotonic() < deadline:
        time.sleep(0.5)
        connected = list(grid.get_node_ids())
    if len(connected) < num_nodes:
        raise RuntimeError(f"only {len(connected)} of {num_nodes} nodes connected within {wait_timeout:g} s")
    return sorted(connected)[:num_nodes]


def query(node_id: int) -> Message:
    """An empty ``query`` message (the warm-up wave)."""
    return Message(RecordDict(), dst_node_id=node_id, message_type="query")


def train_message(node_id: int, server_round: int, model: np.ndarray) -> Message:
    """One node's ``train`` message: its own copy of ``model`` and the round."""
    arrays = ArrayRecord({"model": Array(model.copy())})
    content = RecordDict({"arrays": arrays, "config": ConfigRecord({"server-round": server_round})})
    return Message(content, dst_node_id=node_id, message_type="train")


def check_replies(replies, expected: int, stage: str, num_floats: int | None = None) -> None:
    """Fail unless every node replied without error (and, for ``train``, with ``num_floats`` float32)."""
    replies = list(replies)
    errors = [r.error.reason for r in replies if r.has_error()]
    if len(replies) != expected or errors:
        raise RuntimeError(f"{stage}: {len(replies)} of {expected} replies, errors: {errors[:3]}")
    if num_floats is not None:  # from the Array's metadata: the floor decodes no reply
        shapes = {tuple(r.content["arrays"]["model"].shape) for r in replies}
        if shapes != {(num_floats,)}:
            raise RuntimeError(f"{stage}: replies carry arrays of shapes {shapes}, expected ({num_floats},)")
