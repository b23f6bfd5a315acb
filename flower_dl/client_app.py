"""ClientApp: one node of the decentralized network.

The node owns its partition. It answers four kinds of messages:

``query.identify``  its ``partition-id`` (its place in the topology) and size;
``query.share``     the exchange phase: a sample of its original data for its neighbours;
``query.receive``   what its neighbours sent; kept in ``context.state``, merged
                    (deduplicated) into its training set; replies with the
                    summaries of the leakage hook, never raw data (and, when
                    the server asks one node for it, the initial model);
``train``           local SGD epochs on own + received data;
``evaluate``        accuracy and loss of the model it is sent on the test set.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from flower_dl import crypto, exchange, import_in_background, privacy
from flower_dl.config import RunConfig
from flower_dl.data import load_dataset, partition_indices

if TYPE_CHECKING:
    import torch

# torch is imported only by the train and evaluate handlers (and by the one
# query.receive that builds the initial model): on a SuperNode each message runs
# in a fresh process, and the other exchange-phase queries need no torch.

app = ClientApp()

RECEIVED_KEY = "received"
SENT_KEY = "sent"
KEYS_KEY = "exchange-keys"


# --------------------------------------------------------------------- state
@dataclass
class NodeData:
    """A node's data: own + received samples (deduplicated), built once per run and exchange."""

    partition_id: int
    own_ids: np.ndarray
    train_ids: np.ndarray
    train_images: np.ndarray
    train_labels: np.ndarray
    cfg: RunConfig
    received_version: int = 0
    _tensors: tuple | None = None

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(train_x, train_y, test_x, test_y)``, made once; the test set once per process."""
        if self._tensors is None:
            import torch

            from flower_dl.data import to_tensor

            dev = device()
            data = load_dataset(self.cfg.dataset, self.cfg.data_dir)
            test_x, test_y = _cached(
                ("test", self.cfg.dataset, self.cfg.data_dir, str(dev)),
                lambda: (
                    to_tensor(data.test_images).to(dev),
                    torch.from_numpy(data.test_labels.astype(np.int64)).to(dev),
                ),
            )
            train_x = to_tensor(self.train_images).to(dev)
            train_y = torch.from_numpy(np.asarray(self.train_labels, dtype=np.int64)).to(dev)
            self._tensors = (train_x, train_y, test_x, test_y)
        return self._tensors


_CACHE: dict[tuple, object] = {}


def device():  # -> torch.device
    """The GPU when this process was given one (e.g. ``client-resources-num-gpus``), else the CPU."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _cached(key: tuple, build):
    """Tiny per-process cache (configs, partitions)."""
    if key not in _CACHE:
        _CACHE[key] = build()
    return _CACHE[key]


def run_config_of(context: Context) -> RunConfig:
    """The validated run config (validated once per process and config).

    A ``data-dir`` in the node config (a SuperNode's own data folder) takes
    precedence over the run config's.
    """
    frozen = tuple(sorted(context.run_config.items()))
    node_dir = context.node_config.get("data-dir")

    def build() -> RunConfig:
        cfg = RunConfig.from_run_config(context.run_config)
        return cfg.replace(data_dir=str(node_dir)) if node_dir else cfg

    return _cached(("config", frozen, node_dir), build)


def partition_id_of(context: Context, cfg: RunConfig) -> int:
    """The node's topology position, from its node config, checked against ``num-nodes``."""
    node_config = context.node_config
    if "partition-id" not in node_config:
        raise ValueError(
            "node config: 'partition-id' is missing; start the SuperNode with "
            '--node-config "partition-id=<0..num-nodes-1> num-partitions=<num-nodes>"'
        )
    pid = node_config["partition-id"]
    if isinstance(pid, bool) or not isinstance(pid, int) or not 0 <= pid < cfg.num_nodes:
        raise ValueError(
            f"node config: partition-id {pid!r} is out of range; allowed: 0..{cfg.num_nodes - 1} "
            f"(num-nodes = {cfg.num_nodes})"
        )
    num_partitions = node_config.get("num-partitions", cfg.num_nodes)
    if num_partitions != cfg.num_nodes:
        raise ValueError(
            f"node config: num-partitions {num_partitions!r} differs from run config num-nodes "
            f"{cfg.num_nodes}; they must be equal"
        )
    return int(pid)


def _partition(cfg: RunConfig) -> list[np.ndarray]:
    data = load_dataset(cfg.dataset, cfg.data_dir)
    return _cached(
        (
            "partition",
            cfg.dataset,
            cfg.data_dir,
            cfg.partitioner,
            cfg.num_nodes,
            cfg.digits_per_node,
            cfg.dirichlet_alpha,
            cfg.seed,
        ),
        lambda: partition_indices(
            data.train_labels,
            cfg.partitioner,
            cfg.num_nodes,
            digits_per_node=cfg.digits_per_node,
            alpha=cfg.dirichlet_alpha,
            seed=cfg.seed,
        ),
    )


def node_data(context: Context) -> NodeData:
    """The node's data, own merged with what it received (tensors via :meth:`NodeData.tensors`)."""
    cfg = run_config_of(context)
    pid = partition_id_of(context, cfg)
    received = context.state.get(RECEIVED_KEY)
    version = int(received["version"].numpy()[0]) if received is not None else 0
    key = ("node", context.run_id, pid, version, cfg)

    def build() -> NodeData:
        data = load_dataset(cfg.dataset, cfg.data_dir)
        own = _partition(cfg)[pid]
        x = data.train_images[own]
        y = data.train_labels[own]
        ids = own
        if received is not None:
            got = _received_arrays(received)
            merged = exchange.merge(own, got["pairs"])
            keep = merged.received_positions
            x = np.concatenate([x, got["images"][keep]])
            y = np.concatenate([y, got["labels"][keep]])
            ids = merged.ids
        return NodeData(
            partition_id=pid,
            own_ids=own,
            train_ids=ids,
            train_images=x,
            train_labels=y,
            cfg=cfg,
            received_version=version,
        )

    # drop this node's stale versions and other runs' data
    for old in [k for k in _CACHE if k[0] == "node" and (k[1] != key[1] or k[2] == pid) and k != key]:
        del _CACHE[old]
    if key not in _CACHE:
        _CACHE[key] = build()
    return _CACHE[key]  # type: ignore[return-value]


def _received_arrays(record: ArrayRecord) -> dict:
    ids = record["ids"].numpy()
    src = record["src"].numpy()
    pairs = []
    for s in dict.fromkeys(src.tolist()):  # sources in order of appearance
        pairs.append((int(s), ids[src == s]))
    order = np.concatenate([np.flatnonzero(src == s) for s, _ in pairs]) if pairs else np.zeros(0, int)
    return {
        "pairs": pairs,
        "images": record["images"].numpy()[order],
        "labels": record["labels"].numpy()[order],
    }


FAULTS_ENV = "FLOWER_DL_FAULTS"
"""Testing aid: ``"stage:partition-id:round,..."`` makes that node raise there
(stages: share, train, evaluate; round 0 for share)."""


def _maybe_fail(stage: str, pid: int, server_round: int = 0) -> None:
    for fault in filter(None, os.environ.get(FAULTS_ENV, "").split(",")):
        f_stage, f_pid, f_round = fault.split(":")
        if (f_stage, int(f_pid), int(f_round)) == (stage, pid, server_round):
            raise RuntimeError(f"injected failure ({FAULTS_ENV}={fault})")


def _seed(*parts: int) -> int:
    digest = hashlib.sha256(",".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little")


# ------------------------------------------------------------------ handlers
def key_pair(context: Context) -> crypto.KeyPair:
    """This node's X25519 key pair for the exchange, made once per run and kept in its state."""
    stored = context.state.get(KEYS_KEY)
    if stored is None:
        keys = crypto.KeyPair.generate()
        context.state[KEYS_KEY] = ConfigRecord({"private": keys.private_bytes})
        return keys
    return crypto.KeyPair.from_private_bytes(stored["private"])


def _edge_context(context: Context) -> bytes:
    return f"run {context.run_id}".encode()


_TORCH_WARM_UP_STARTED = False


def _warm_up_torch_in_simulation_worker() -> None:
    """In a simulation worker, start importing torch (~2 s) in the background.

    A simulation runs the ClientApp in long-lived Ray workers: importing torch
    while the exchange phase runs keeps that import out of round 1. A
    SuperNode runs each message in a fresh process whose queries need no
    torch, so nothing is started there.
    """
    global _TORCH_WARM_UP_STARTED
    if "ray" in sys.modules and "torch" not in sys.modules and not _TORCH_WARM_UP_STARTED:
        _TORCH_WARM_UP_STARTED = True
        import_in_background("flower_dl.training")


@app.query("identify")
def identify(msg: Message, context: Context) -> Message:
    """Tell the server this node's ``partition-id``, data size and exchange public key."""
    _warm_up_torch_in_simulation_worker()
    cfg = run_config_of(context)
    pid = partition_id_of(context, cfg)
    own = _partition(cfg)[pid]
    info = ConfigRecord(
        {
            "partition-id": pid,
            "num-train-examples": len(own),
            "public-key": key_pair(context).public_bytes,
        }
    )
    return Message(RecordDict({"info": info}), reply_to=msg)


@app.query("share")
def share(msg: Message, context: Context) -> Message:
    """Draw ``share-ratio`` of the original samples for the neighbours named in the message."""
    cfg = run_config_of(context)
    pid = partition_id_of(context, cfg)
    neighbours = [int(j) for j in msg.content["exchange"]["neighbours"]]
    _maybe_fail("share", pid)
    data = load_dataset(cfg.dataset, cfg.data_dir)
    own = _partition(cfg)[pid]
    rng = np.random.default_rng(_seed(cfg.seed, pid, 7))
    shares = exchange.draw_shares(own, cfg.share_ratio, neighbours, cfg.exchange_mode, rng)
    record = ArrayRecord()
    counts = MetricRecord()
    sent = ArrayRecord()
    for key, positions in shares.items():
        sent[f"ids:{key}"] = Array(own[positions])
    context.state[SENT_KEY] = sent
    if cfg.exchange_encryption:
        # one ciphertext per neighbour: only that neighbour can open it
        keys = key_pair(context)
        public = dict(zip(neighbours, msg.content["exchange"]["public-keys"]))
        for j in neighbours:
            ids = own[exchange.payload_for(shares, j)]
            record[f"sealed:{j}"] = Array(
                crypto.seal_samples(
                    keys,
                    public[j],
                    pid,
                    j,
                    ids,
                    data.train_images[ids],
                    data.train_labels[ids],
                    context=_edge_context(context),
                )
            )
            counts[f"count:{j}"] = len(ids)
    else:
        for key, positions in shares.items():
            ids = own[positions]
            record[f"ids:{key}"] = Array(ids)
            record[f"images:{key}"] = Array(np.ascontiguousarray(data.train_images[ids]))
            record[f"labels:{key}"] = Array(data.train_labels[ids])
    return Message(RecordDict({"share": record, "counts": counts}), reply_to=msg)


@app.query("receive")
def receive(msg: Message, context: Context) -> Message:
    """Keep what the neighbours sent; reply with the leakage hook's summaries."""
    cfg = run_config_of(context)
    pid = partition_id_of(context, cfg)
    incoming = msg.content["received"]
    previous = context.state.get(RECEIVED_KEY)
    version = (int(previous["version"].numpy()[0]) if previous is not None else 0) + 1
    stored = (
        _open_received(msg, context, pid)
        if cfg.exchange_encryption
        else ArrayRecord({key: incoming[key] for key in ("ids", "src", "images", "labels")})
    )
    stored["version"] = Array(np.array([version], dtype=np.int64))
    context.state[RECEIVED_KEY] = stored
    nd = node_data(context)

    data = load_dataset(cfg.dataset, cfg.data_dir)
    summaries = ArrayRecord()
    metrics = MetricRecord({"partition-id": pid, "num-train-examples": len(nd.train_ids)})
    own = nd.own_ids
    summaries["original-intensity"] = Array(privacy.intensity_distribution(data.train_images[own]))
    summaries["original-labels"] = Array(privacy.label_distribution(data.train_labels[own]))
    summaries["exchanged-intensity"] = Array(privacy.intensity_distribution(data.train_images[nd.train_ids]))
    summaries["exchanged-labels"] = Array(privacy.label_distribution(data.train_labels[nd.train_ids]))
    sent = context.state.get(SENT_KEY)
    if sent is not None:
        for key in sent:
            target = key.split(":", 1)[1]
            ids = sent[key].numpy()
            summaries[f"sent-intensity:{target}"] = Array(privacy.intensity_distribution(data.train_images[ids]))
            summaries[f"sent-labels:{target}"] = Array(privacy.label_distribution(data.train_labels[ids]))
    merged = exchange.merge(own, _received_arrays(stored)["pairs"])
    for src, count in merged.new_per_source.items():
        metrics[f"new-from:{src}"] = count
    reply = RecordDict({"summaries": summaries, "metrics": metrics})
    if exchange.INITIAL_MODEL_KEY in msg.content.config_records:
        asked = msg.content[exchange.INITIAL_MODEL_KEY]
        from flower_dl.models import initial_arrays  # imports torch (in a simulation worker: already under way)

        reply[exchange.INITIAL_MODEL_KEY] = initial_arrays(str(asked["model"]), int(asked["seed"]))
    return Message(reply, reply_to=msg)


def _open_received(msg: Message, context: Context, pid: int) -> ArrayRecord:
    """Decrypt what each neighbour sealed for this node into ids/src/images/labels arrays."""
    incoming = msg.content["received"]
    sources = msg.content["sources"]
    keys = key_pair(context)
    parts = []
    for src, public in zip(sources["src"], sources["public-keys"]):
        ids, images, labels = crypto.open_samples(
            keys, public, int(src), pid, incoming[f"sealed:{src}"].numpy(), context=_edge_context(context)
        )
        parts.append((int(src), ids, images, labels))
    return ArrayRecord({key: Array(value) for key, value in exchange.concat_parts(parts).items()})


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Train the received model for ``local-epochs`` epochs on own + received data."""
    cfg = run_config_of(context)
    nd = node_data(context)
    server_round = int(msg.content["config"].get("server-round", 0))
    _maybe_fail("train", nd.partition_id, server_round)
    import torch

    from flower_dl import training
    from flower_dl.models import build_model

    train_x, train_y, _, _ = nd.tensors()
    model = build_model(cfg.model)
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    model.to(train_x.device)
    seed = _seed(cfg.seed, nd.partition_id, server_round)
    torch.manual_seed(seed)  # dropout masks
    generator = torch.Generator().manual_seed(seed)
    mu = cfg.proximal_mu if cfg.strategy == "fedprox" else 0.0
    started = time.perf_counter()
    loss = training.train(
        model,
        train_x,
        train_y,
        epochs=cfg.local_epochs,
        lr=cfg.lr,
        momentum=cfg.momentum,
        batch_size=cfg.batch_size,
        generator=generator,
        proximal_mu=mu,
    )
    metrics = MetricRecord(
        {
            "train-loss": loss,
            "train-seconds": time.perf_counter() - started,
            "num-examples": len(train_y),
            "partition-id": nd.partition_id,
            "server-round": server_round,
        }
    )
    content = RecordDict({"arrays": ArrayRecord(model.cpu().state_dict()), "metrics": metrics})
    return Message(content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Evaluate the received model on the test set."""
    cfg = run_config_of(context)
    nd = node_data(context)
    _maybe_fail("evaluate", nd.partition_id, int(msg.content["config"].get("server-round", 0)))
    from flower_dl import training  # imports torch (ArrayRecord.to_torch_state_dict needs it)
    from flower_dl.models import build_model

    _, _, test_x, test_y = nd.tensors()
    model = build_model(cfg.model)
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    model.to(test_x.device)
    loss, acc = training.evaluate(model, test_x, test_y)
    metrics = MetricRecord(
        {
            "eval-loss": loss,
            "eval-acc": acc,
            "num-examples": len(test_y),
            "partition-id": nd.partition_id,
            "server-round": int(msg.content["config"].get("server-round", 0)),
        }
    )
    return Message(RecordDict({"metrics": metrics}), reply_to=msg)
