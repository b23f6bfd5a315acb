"""ServerApp: run config -> topology -> exchange phase -> leakage hook -> strategy -> results.

The server never reads a dataset: nodes hold the data, send their shares in
Flower messages (the server relays them to the right neighbours), and report
only summaries (intensity and label distributions) for the leakage hook.
"""

from __future__ import annotations

import platform
import time
from logging import ERROR, INFO, WARNING
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.common.logger import log
from flwr.serverapp import Grid, ServerApp

from flower_dl import privacy, results
from flower_dl.config import RunConfig
from flower_dl.exchange import BROADCAST, INITIAL_MODEL_KEY, concat_parts
from flower_dl.grid import PromptGrid
from flower_dl.strategies import MetricsRecorder, build_strategy, short_reason
from flower_dl.topology import build_graph, describe, mixing_matrix, neighbours

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Entry point of ``flwr run``: read the run config once and run the experiment."""
    try:
        cfg = RunConfig.from_run_config(context.run_config)
        # on a deployment Flower's send_and_receive polls for replies every 3 s; PromptGrid does not wait
        run_experiment(PromptGrid(grid), cfg, flower_run_id=context.run_id)
    except Exception as err:
        # Flower reports only an exit code for a failed ServerApp: say what went wrong
        log(ERROR, "flower-dl: the run failed: %s", err)
        raise


# ----------------------------------------------------------------- topology
def build_topology(cfg: RunConfig) -> tuple[nx.Graph, np.ndarray]:
    """Graph and validated mixing matrix of the run config (raises before any training)."""
    graph = build_graph(
        cfg.topology, cfg.num_nodes, edges=cfg.edges, degree=cfg.degree, prob=cfg.edge_prob, seed=cfg.seed
    )
    W = mixing_matrix(graph, cfg.mixing)
    return graph, W


# -------------------------------------------------------------------- nodes
def discover_nodes(grid: Grid, cfg: RunConfig) -> tuple[dict[int, int], dict[int, bytes]]:
    """Map every ``partition-id`` to a Flower node id (and the node's exchange public key).

    Waits up to ``node-wait-timeout`` seconds for ``num-nodes`` nodes to
    connect, then asks each for its ``partition-id``. Fails with the missing or
    duplicated ids otherwise.
    """
    deadline = time.monotonic() + cfg.node_wait_timeout
    node_ids = list(grid.get_node_ids())
    while len(node_ids) < cfg.num_nodes and time.monotonic() < deadline:
        time.sleep(0.5)
        node_ids = list(grid.get_node_ids())
    if len(node_ids) < cfg.num_nodes:
        raise RuntimeError(
            f"only {len(node_ids)} of num-nodes = {cfg.num_nodes} nodes connected within "
            f"node-wait-timeout = {cfg.node_wait_timeout:g} s"
        )
    messages = [Message(RecordDict(), dst_node_id=nid, message_type="query.identify") for nid in node_ids]
    replies = list(grid.send_and_receive(messages, timeout=cfg.node_wait_timeout))
    by_pid: dict[int, list[int]] = {}
    public_keys: dict[int, bytes] = {}
    errors = []
    for reply in replies:
        if reply.has_error():
            errors.append(f"node {reply.metadata.src_node_id}: {reply.error.reason}")
            continue
        pid = int(reply.content["info"]["partition-id"])
        by_pid.setdefault(pid, []).append(reply.metadata.src_node_id)
        public_keys[pid] = bytes(reply.content["info"]["public-key"])
    if errors:
        raise RuntimeError("nodes failed to identify themselves: " + "; ".join(errors))
    missing = sorted(set(range(cfg.num_nodes)) - set(by_pid))
    duplicated = sorted(pid for pid, nids in by_pid.items() if len(nids) > 1)
    if missing or duplicated:
        raise RuntimeError(
            f"every partition-id 0..{cfg.num_nodes - 1} must be present exactly once among the "
            f"connected nodes; missing: {missing or 'none'}; duplicated: {duplicated or 'none'}"
        )
    return {pid: nids[0] for pid, nids in by_pid.items()}, public_keys


# ----------------------------------------------------------------- exchange
def run_exchange(
    grid: Grid, cfg: RunConfig, graph: nx.Graph, node_ids: dict[int, int], public_keys: dict[int, bytes]
) -> dict[str, Any]:
    """The exchange phase and the leakage hook.

    With ``exchange-encryption`` (the default) each node seals its samples for
    each neighbour with a key only the two of them can derive (X25519 + AES-GCM,
    :mod:`flower_dl.crypto`); the server relays ciphertext it cannot read.

    Returns
    -------
    dict
        ``leakage`` (node -> float), ``edges`` (rows for edges.csv),
        ``maps`` (node -> {"original", "exchanged", "transmitted"} intensity maps),
        ``failed`` (nodes that did not take part),
        ``initial`` (the initial model's ArrayRecord, built by the first node that
        took part, see :func:`initial_model`; None if that node failed).
    """
    n = cfg.num_nodes
    pid_of = {nid: pid for pid, nid in node_ids.items()}
    nbrs = {i: neighbours(graph, i) for i in range(n)}

    # 1. every node draws its share(s)
    asks = [
        Message(
            RecordDict(
                {"exchange": ConfigRecord({"neighbours": nbrs[i], "public-keys": [public_keys[j] for j in nbrs[i]]})}
            ),
            dst_node_id=node_ids[i],
            message_type="query.share",
        )
        for i in range(n)
    ]
    shares: dict[int, RecordDict] = {}
    failed: dict[int, str] = {}
    for reply in grid.send_and_receive(asks, timeout=cfg.round_timeout):
        pid = pid_of[reply.metadata.src_node_id]
        if reply.has_error():
            failed[pid] = short_reason(reply.error.reason)
        else:
            shares[pid] = reply.content
    for pid in range(n):
        if pid not in shares and pid not in failed:
            failed[pid] = "no reply within the round timeout"

    # 2. relay to neighbours (ciphertext, or plaintext when encryption is off)
    sends = []
    sizes: dict[tuple[int, int], tuple[int, int]] = {}
    builder = next((pid for pid in range(n) if pid not in failed), None)  # builds the initial model
    for dst in range(n):
        sources = [src for src in nbrs[dst] if src in shares]
        rec = ArrayRecord()
        if cfg.exchange_encryption:
            for src in sources:
                blob = shares[src]["share"][f"sealed:{dst}"]
                rec[f"sealed:{src}"] = blob
                sizes[(src, dst)] = (int(shares[src]["counts"][f"count:{dst}"]), int(blob.numpy().nbytes))
        else:
            parts = []
            for src in sources:
                share = shares[src]["share"]
                key = BROADCAST if f"ids:{BROADCAST}" in share else dst
                ids, images, labels = (share[f"{k}:{key}"].numpy() for k in ("ids", "images", "labels"))
                sizes[(src, dst)] = (len(ids), int(ids.nbytes + images.nbytes + labels.nbytes))
                parts.append((src, ids, images, labels))
            for key, value in concat_parts(parts).items():
                rec[key] = Array(value)
        content = RecordDict(
            {
                "received": rec,
                "sources": ConfigRecord({"src": sources, "public-keys": [public_keys[s] for s in sources]}),
            }
        )
        if dst == builder:
            content[INITIAL_MODEL_KEY] = ConfigRecord({"model": cfg.model, "seed": cfg.seed})
        if dst not in failed:
            sends.append(Message(content, dst_node_id=node_ids[dst], message_type="query.receive"))
    summaries: dict[int, RecordDict] = {}
    for reply in grid.send_and_receive(sends, timeout=cfg.round_timeout):
        pid = pid_of[reply.metadata.src_node_id]
        if reply.has_error():
            failed[pid] = short_reason(reply.error.reason)
        else:
            summaries[pid] = reply.content
    for pid in range(n):
        if pid not in summaries and pid not in failed:
            failed[pid] = "no reply within the round timeout"
    for pid, reason in failed.items():
        log(WARNING, "exchange phase: node %d failed (%s); its neighbours train without its data", pid, reason)

    # 4. leakage: KL(sent_ij || exchanged_j), JS, label KL
    def arr(pid: int, key: str) -> np.ndarray | None:
        s = summaries.get(pid)
        return None if s is None or key not in s["summaries"] else s["summaries"][key].numpy()

    sent_maps: dict[tuple[int, int], np.ndarray] = {}
    exchanged = {j: arr(j, "exchanged-intensity") for j in range(n)}
    edges = []
    for i in range(n):
        for j in nbrs[i]:
            key = BROADCAST if cfg.exchange_mode == "broadcast" else j
            p_sent = arr(i, f"sent-intensity:{key}")
            p_lab = arr(i, f"sent-labels:{key}")
            q = exchanged[j]
            q_lab = arr(j, "exchanged-labels")
            count, nbytes = sizes.get((i, j), (0, 0))
            row: dict[str, Any] = {"src": i, "dst": j, "samples-sent": count, "bytes-sent": nbytes}
            if i in failed or j in failed:
                row["failed"] = "; ".join(f"node {x} failed in the exchange" for x in (i, j) if x in failed)
            if j in summaries:
                row["new-samples"] = int(summaries[j]["metrics"].get(f"new-from:{i}", 0))
            if p_sent is not None and q is not None and count > 0:
                sent_maps[(i, j)] = p_sent
                row["kl-sent-vs-exchanged"] = privacy.kl_divergence(p_sent, q)
                row["js-sent-vs-exchanged"] = privacy.js_divergence(p_sent, q)
                row["label-kl"] = privacy.kl_divergence(p_lab, q_lab)
            edges.append(row)
    leak = {i: 0.0 for i in range(n)}
    leak.update(privacy.leakage(cfg.share_ratio, sent_maps, {j: q for j, q in exchanged.items() if q is not None}))
    for i in failed:
        leak[i] = float("nan")
    maps = {}
    for i in range(n):
        if i in summaries:
            key = BROADCAST if cfg.exchange_mode == "broadcast" else (nbrs[i][0] if nbrs[i] else BROADCAST)
            transmitted = arr(i, f"sent-intensity:{key}")
            maps[i] = {
                "original": arr(i, "original-intensity"),
                "exchanged": arr(i, "exchanged-intensity"),
                "transmitted": transmitted if transmitted is not None else np.zeros((28, 28)),
            }
    for i in range(n):
        log(INFO, "leakage of node %d: %.6f", i, leak[i])
    initial = None
    if builder in summaries and INITIAL_MODEL_KEY in summaries[builder].array_records:
        initial = summaries[builder][INITIAL_MODEL_KEY]
    return {"leakage": leak, "edges": edges, "maps": maps, "failed": failed, "initial": initial}


def initial_model(cfg: RunConfig, from_node: ArrayRecord | None) -> ArrayRecord:
    """The initial model: ``build_model(cfg.model, seed=cfg.seed)``'s weights.

    A node builds it (the first that took part in the exchange phase, asked
    in its ``query.receive``; a node imports torch anyway, to train), so
    that the ServerApp does not import torch at all: ~2 s of CPU, which on a
    2-core machine competes with the simulation's workers on the way to
    round 1. Built here only if that node failed (Flower's legacy servers
    likewise ask a client for the initial parameters).
    """
    if from_node is not None:
        return from_node
    from flower_dl.models import initial_arrays  # imports torch

    return initial_arrays(cfg.model, cfg.seed)


# ---------------------------------------------------------------- experiment
def run_experiment(grid: Grid, cfg: RunConfig, flower_run_id: int | None = None) -> Path:
    """Run one experiment end to end and write its results folder; return the folder."""
    started = time.time()
    graph, W = build_topology(cfg)
    topo = describe(graph, W)
    log(INFO, "topology %s: %s (spectral gap of W: %.4f)", cfg.topology, topo, topo["spectral-gap"])

    node_ids, public_keys = discover_nodes(grid, cfg)
    log(INFO, "nodes by partition-id: %s", node_ids)
    exchanged = run_exchange(grid, cfg, graph, node_ids, public_keys)

    recorder = MetricsRecorder()
    for pid, reason in exchanged["failed"].items():
        recorder.on_failure(0, pid, "exchange", reason)
    strategy = build_strategy(cfg, recorder, mixing_matrix=W, node_ids=node_ids)
    strategy.start(
        grid=grid,
        initial_arrays=initial_model(cfg, exchanged["initial"]),
        num_rounds=cfg.num_server_rounds,
        timeout=cfg.round_timeout,
    )

    consensus = getattr(strategy, "consensus", {})
    # Flower's built-in strategies drop failed replies silently: a missing train reply is a failure
    for rnd in range(1, cfg.num_server_rounds + 1):
        for node in range(cfg.num_nodes):
            if (rnd, node) not in recorder.train and not any(
                f["round"] == rnd and f["node"] == node and f["stage"] == "train" for f in recorder.failures
            ):
                recorder.on_failure(rnd, node, "train", "no train reply (error or timeout)")
    failed_at = {(f["round"], f["node"]) for f in recorder.failures if f["stage"] == "train"}
    rows = []
    for rnd in range(1, cfg.num_server_rounds + 1):
        for node in range(cfg.num_nodes):
            ev = recorder.evaluate.get((rnd, node), {})
            tr = recorder.train.get((rnd, node), {})
            rows.append(
                {
                    "round": rnd,
                    "node": node,
                    "accuracy": ev.get("eval-acc"),
                    "loss": ev.get("eval-loss"),
                    "train-loss": tr.get("train-loss"),
                    "train-seconds": tr.get("train-seconds"),
                    "num-train-examples": tr.get("num-examples"),
                    "leakage": exchanged["leakage"][node],
                    "consensus-distance": consensus.get(rnd, 0.0 if cfg.strategy != "decentralized" else None),
                    "failed": int((rnd, node) in failed_at),
                }
            )
    last = [r["accuracy"] for r in rows if r["round"] == cfg.num_server_rounds and r["accuracy"] is not None]
    summary = {
        "rounds": cfg.num_server_rounds,
        "accuracy": {r["node"]: r["accuracy"] for r in rows if r["round"] == cfg.num_server_rounds},
        "accuracy-mean": float(np.mean(last)) if last else None,
        "accuracy-min": float(np.min(last)) if last else None,
        "accuracy-max": float(np.max(last)) if last else None,
        "leakage": {k: (None if np.isnan(v) else v) for k, v in exchanged["leakage"].items()},
        "leakage-mean": float(np.nanmean(list(exchanged["leakage"].values()))),
        "failures": recorder.failures,
        "wall-time-s": time.time() - started,
    }
    config = {
        "run-config": cfg.to_run_config(),
        "topology": topo,
        "edges": sorted([list(e) for e in graph.edges()]),
        "mixing-matrix": W.tolist() if cfg.num_nodes <= 64 else None,
        "flower-run-id": flower_run_id,
        "versions": library_versions(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
    }
    figures = {}
    if exchanged["maps"] and cfg.num_nodes <= 32:
        figures["intensity.png"] = results.intensity_figure(exchanged["maps"], cfg)
    folder = results.write_run_folder(
        Path(cfg.results_dir).expanduser(),
        results.run_folder_name(cfg.to_run_config(), started),
        config=config,
        rows=rows,
        edges=exchanged["edges"],
        summary=summary,
        figures=figures,
    )
    log(INFO, "")
    log(INFO, "flower-dl summary (%s, %s, %d rounds):", cfg.strategy, cfg.model, cfg.num_server_rounds)
    for node in range(cfg.num_nodes):
        acc = summary["accuracy"].get(node)
        log(
            INFO,
            "  node %d: accuracy %s, leakage %.6f",
            node,
            "n/a" if acc is None else f"{acc:.4f}",
            exchanged["leakage"][node],
        )
    if last:
        log(
            INFO,
            "  mean accuracy %.4f (min %.4f, max %.4f)",
            summary["accuracy-mean"],
            summary["accuracy-min"],
            summary["accuracy-max"],
        )
    log(INFO, "results written to %s", folder.resolve())
    return folder


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries a result depends on."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("flower-dl", "flwr", "torch", "torchvision", "numpy", "scipy", "networkx", "flwr-datasets"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out
