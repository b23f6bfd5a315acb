"""The messages of a run: every message type, every record key, a builder and a parser for each.

The server and the nodes talk only through the messages below; both sides
build and read them with the functions of this module, so a record key is
spelt here and nowhere else. Every request carries the run config it belongs
to (record ``run-config``), so a node needs nothing but the message and its
own node config (``partition-id``, ``data-dir``) to know what to do.

=================  ======  ==========================================================  ===============================
message            sender  records: keys                                               meaning
=================  ======  ==========================================================  ===============================
``query.identify`` server  ``run-config``                                              who are you?
  reply            node    ``info``: partition-id, num-train-examples, public-key,     its place and exchange key,
                           data-digest, mia-samples                                    its data's digest, the attack's
                                                                                       size (capped to what it holds)
``query.share``    server  ``run-config``; ``exchange``: neighbours, public-keys        draw your share for them
  reply            node    ``share``: ``sealed:{j}`` per neighbour j (encrypted), or   the share, sealed for each
                           ``ids:{k}``, ``images:{k}``, ``labels:{k}`` per share k     neighbour or in clear
                           (k: a neighbour, or -1 = exchange.BROADCAST);
                           ``counts``: ``count:{j}`` (samples sealed for j)
``query.receive``  server  ``run-config``; ``received``: ``sealed:{src}`` per source,   what your neighbours sent
                           or ``ids``, ``src``, ``images``, ``labels`` (in clear);
                           ``sources``: src, public-keys;
                           [``initial-model``: model, seed]                            (one node: build the model)
  reply            node    ``summaries``: original-/exchanged-intensity and -labels,   the leakage hook's summaries
                           ``sent-intensity:{k}``, ``sent-labels:{k}``, own-ids,       (sample ids, never images:
                           ``received-ids:{src}``;                                     exposure is counted on them)
                           ``metrics``: num-train-examples, ``new-from:{src}``,
                           ``nn-distance:{k}``;
                           [``initial-model``: the model's arrays]
``train``          server  ``run-config``; ``arrays``: the model to train;              train it locally (evaluate it
                           ``config``: server-round, [proximal-mu], [evaluate-first];  first, if asked; add the
                           [``correction``: an array per parameter]                    correction at every step)
  reply            node    ``arrays``: the trained model; ``metrics``: train-loss,      the trained model (and the
                           train-seconds, num-examples, num-steps,                     received one's accuracy;
                           [eval-loss, eval-acc, mia-*, rmia-*], [sent-mia-*,           the attacks on the model
                           sent-rmia-*], [dp-epsilon];                                 it sends; DP's epsilon)
                           ``node``: device                                            (where it trained)
``evaluate``       server  ``run-config``; ``arrays``: the model; ``config``:           evaluate it on your test set
                           server-round
  reply            node    ``metrics``: eval-loss, eval-acc, num-examples,              its accuracy and loss (and the
                           [mia-*, rmia-*]                                             membership attacks' results)
=================  ======  ==========================================================  ===============================

``arrays``, ``config`` and ``metrics`` are the keys Flower's own strategies use
(``FedAvg(arrayrecord_key="arrays", configrecord_key="config")``), so a node
answers Flower's built-in strategies and flower-dl's alike; ``proximal-mu`` is
the key Flower's ``FedProx`` sends. A node never reads the strategy's name:
what it must do is in the ``config`` record, and a ``correction`` record (gradient
tracking's ``c_i``, :mod:`flower_dl.strategies.gradient_tracking`) is added to the
gradient at every local step when a strategy sends one.

Parsers of the server's side turn replies into plain Python and numpy values
(:class:`NodeInfo`, :class:`Share`, :class:`~flower_dl.privacy.leakage.NodeSummary`, dicts of metrics named
as the columns of ``metrics.csv``), so everything after them (the leakage
hook, the results) is tested without Flower.

One module although over ~400 lines: it is, by design, the one place where every
record key is spelt, with the builder and the parser of each message side by side.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict

from flower_dl.exchange.plan import payload_for
from flower_dl.privacy.leakage import NodeSummary

# message types
IDENTIFY = "query.identify"
SHARE = "query.share"
RECEIVE = "query.receive"
TRAIN = MessageType.TRAIN
EVALUATE = MessageType.EVALUATE

# records (keys of a message's RecordDict)
RUN_CONFIG = "run-config"
INFO = "info"
EXCHANGE = "exchange"
SHARE_RECORD = "share"
COUNTS = "counts"
RECEIVED = "received"
SOURCES = "sources"
SUMMARIES = "summaries"
INITIAL_MODEL = "initial-model"
ARRAYS = "arrays"
CONFIG = "config"
METRICS = "metrics"
NODE = "node"
"""A ``train`` reply's ConfigRecord of facts about the node (its device), beside Flower's one MetricRecord."""
CORRECTION = "correction"

# keys inside records
SERVER_ROUND = "server-round"
PROXIMAL_MU = "proximal-mu"
EVALUATE_FIRST = "evaluate-first"
"""In a ``train`` config: evaluate the received model before training it (one message a round)."""
NUM_EXAMPLES = "num-examples"
NUM_STEPS = "num-steps"
"""The weighting key of Flower's strategies (``weighted_by_key``)."""
SENT_ATTACK_PREFIX = "sent-"
"""Metrics of a ``train`` reply that attack the model the node sends (``sent-mia-auc``, ``sent-rmia-tpr-1fpr``, ...)."""
DP_EPSILON = "dp-epsilon"
"""A ``train`` reply's DP-SGD epsilon: the node's privacy loss over its local training so far."""
CENTRAL_DP_EPSILON = "central-dp-epsilon"
"""The ``metrics.csv`` column of central DP's node-level epsilon (the server records it, no reply carries it)."""
_SUMMARY_NAMES = ("original-intensity", "original-labels", "exchanged-intensity", "exchanged-labels")
_SAMPLE_FIELDS = ("ids", "src", "images", "labels")


# ------------------------------------------------------------- typed record access
# ``RecordDict[key]`` is typed as any of Flower's three records, and a ConfigRecord's or a MetricRecord's values
# as any value Flower allows; which record a key holds, and each value's type, is this module's protocol.
def _arrays(content: RecordDict, key: str) -> ArrayRecord:
    """``content[key]``, an ArrayRecord by the protocol."""
    return cast(ArrayRecord, content[key])


def _values(content: RecordDict, key: str) -> Mapping[str, Any]:
    """``content[key]``, a ConfigRecord or MetricRecord whose values' types the protocol fixes."""
    return content[key]


# ------------------------------------------------------------------- run config
def run_config_record(run_config: Mapping[str, Any]) -> ConfigRecord:
    """The run config (kebab-case keys) as the ``run-config`` record every request carries."""
    return ConfigRecord(dict(run_config))


def run_config_of(msg: Message) -> dict[str, Any]:
    """The run config a request carries (node side)."""
    if RUN_CONFIG not in msg.content.config_records:
        raise ValueError(f"message {msg.metadata.message_type!r} carries no {RUN_CONFIG!r} record")
    return dict(msg.content[RUN_CONFIG])


def with_run_config(content: RecordDict, run_config: ConfigRecord) -> RecordDict:
    """``content`` with the ``run-config`` record added (for a strategy's own train/evaluate messages)."""
    content[RUN_CONFIG] = run_config
    return content


def _request(node_id: int, message_type: str, run_config: ConfigRecord, **records: Any) -> Message:
    content = RecordDict({RUN_CONFIG: run_config, **records})
    return Message(content, dst_node_id=node_id, message_type=message_type)


# --------------------------------------------------------------------- identify
@dataclass(frozen=True)
class NodeInfo:
    """A node's answer to ``query.identify``."""

    partition_id: int
    num_train_examples: int
    public_key: bytes
    """The exchange key as published: 32 bytes, or 96 when signed (:mod:`flower_dl.exchange.identity`); relayed as is."""
    data_digest: str = ""
    """A hash of the arrays the node's data come from (:func:`flower_dl.results.provenance.array_digest`)."""
    mia_samples: int = 0
    """The membership attack's members per evaluation: ``mia-samples``, capped to what the node can supply."""
    input_shape: tuple[int, int, int] = (1, 28, 28)
    """``(channels, height, width)`` of the node's images, as its model sees them."""
    num_classes: int = 10
    """The class count of the node's data (the model's outputs)."""


def identify_request(node_id: int, run_config: ConfigRecord) -> Message:
    return _request(node_id, IDENTIFY, run_config)


def identify_reply(msg: Message, info: NodeInfo) -> Message:
    record = ConfigRecord(
        {
            "partition-id": info.partition_id,
            "num-train-examples": info.num_train_examples,
            "public-key": info.public_key,
            "data-digest": info.data_digest,
            "mia-samples": int(info.mia_samples),
            "input-shape": [int(d) for d in info.input_shape],
            "num-classes": int(info.num_classes),
        }
    )
    return Message(RecordDict({INFO: record}), reply_to=msg)


def parse_identify(reply: Message) -> NodeInfo:
    info = _values(reply.content, INFO)
    return NodeInfo(
        int(info["partition-id"]), int(info["num-train-examples"]), bytes(info["public-key"]),
        str(info.get("data-digest", "")), int(info.get("mia-samples", 0)),
        cast(tuple[int, int, int], tuple(int(d) for d in info.get("input-shape", [1, 28, 28]))),
        int(info.get("num-classes", 10)),
    )  # fmt: skip


# ------------------------------------------------------------------------ share
def share_request(
    node_id: int, run_config: ConfigRecord, neighbours: Sequence[int], public_keys: Sequence[bytes]
) -> Message:
    exchange = ConfigRecord({"neighbours": [int(j) for j in neighbours], "public-keys": list(public_keys)})
    return _request(node_id, SHARE, run_config, **{EXCHANGE: exchange})


def parse_share_request(msg: Message) -> dict[int, bytes]:
    """Neighbour -> its exchange public key, in the order the server listed them."""
    exchange = _values(msg.content, EXCHANGE)
    return {int(j): bytes(key) for j, key in zip(exchange["neighbours"], exchange["public-keys"])}


def share_reply_sealed(msg: Message, sealed: Mapping[int, np.ndarray], counts: Mapping[int, int]) -> Message:
    """Encrypted share: one ciphertext per neighbour ``j`` and how many samples it holds."""
    record = ArrayRecord({f"sealed:{j}": Array(blob) for j, blob in sealed.items()})
    return Message(
        RecordDict({SHARE_RECORD: record, COUNTS: MetricRecord({f"count:{j}": int(c) for j, c in counts.items()})}),
        reply_to=msg,
    )


def share_reply_plain(msg: Message, shares: Mapping[int, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> Message:
    """Share in clear: ``(ids, images, labels)`` per share key (a neighbour, or ``exchange.BROADCAST``)."""
    record = ArrayRecord()
    for key, (ids, images, labels) in shares.items():
        record[f"ids:{key}"] = Array(np.asarray(ids, dtype=np.int64))
        record[f"images:{key}"] = Array(np.ascontiguousarray(images))
        record[f"labels:{key}"] = Array(np.asarray(labels, dtype=np.int64))
    return Message(RecordDict({SHARE_RECORD: record, COUNTS: MetricRecord()}), reply_to=msg)


@dataclass(frozen=True)
class Share:
    """A node's reply to ``query.share``, as the server relays it."""

    sealed: dict[int, Array] = field(default_factory=dict)
    """Neighbour -> ciphertext (encrypted exchange)."""
    counts: dict[int, int] = field(default_factory=dict)
    """Neighbour -> samples in its ciphertext."""
    plain: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)
    """Share key -> ``(ids, images, labels)`` (exchange in clear)."""

    def count(self, dst: int) -> int:
        """How many samples go to neighbour ``dst``."""
        return self.counts[dst] if self.sealed else len(payload_for(self.plain, dst)[0])

    def nbytes(self, dst: int) -> int:
        """Bytes sent to neighbour ``dst`` (the ciphertext, or the arrays in clear)."""
        if self.sealed:
            return int(self.sealed[dst].numpy().nbytes)
        return int(sum(a.nbytes for a in payload_for(self.plain, dst)))


def parse_share(reply: Message) -> Share:
    record = _arrays(reply.content, SHARE_RECORD)
    counts = _values(reply.content, COUNTS)
    sealed = {int(k.split(":", 1)[1]): record[k] for k in record if k.startswith("sealed:")}
    if sealed:
        return Share(sealed=sealed, counts={int(k.split(":", 1)[1]): int(v) for k, v in counts.items()})
    keys = [int(k.split(":", 1)[1]) for k in record if k.startswith("ids:")]
    plain = {
        key: cast(
            tuple[np.ndarray, np.ndarray, np.ndarray],
            tuple(record[f"{name}:{key}"].numpy() for name in ("ids", "images", "labels")),
        )
        for key in keys
    }
    return Share(plain=plain)


# ---------------------------------------------------------------------- receive
def receive_request(
    node_id: int,
    run_config: ConfigRecord,
    sources: Mapping[int, Share],
    dst: int,
    public_keys: Mapping[int, bytes],
    initial_model: tuple[str, int] | None = None,
) -> Message:
    """Relay to node ``dst`` what each of its ``sources`` sent it (ciphertext, or arrays in clear).

    ``initial_model = (model, seed)`` also asks this node to build the run's initial model.
    """
    received = ArrayRecord()
    plain = []
    for src, share in sources.items():
        if share.sealed:
            received[f"sealed:{src}"] = share.sealed[dst]
        else:
            plain.append((src, *payload_for(share.plain, dst)))
    if plain or not sources:
        for key, value in concat_parts(plain).items():
            received[key] = Array(value)
    records: dict[str, Any] = {
        RECEIVED: received,
        SOURCES: ConfigRecord({"src": list(sources), "public-keys": [public_keys[s] for s in sources]}),
    }
    if initial_model is not None:
        records[INITIAL_MODEL] = ConfigRecord({"model": initial_model[0], "seed": int(initial_model[1])})
    return _request(node_id, RECEIVE, run_config, **records)


@dataclass(frozen=True)
class ReceiveRequest:
    """What a node is handed in ``query.receive``."""

    sealed: dict[int, np.ndarray]
    """Source -> ciphertext (encrypted exchange)."""
    plain: dict[str, np.ndarray] | None
    """``ids``, ``src``, ``images``, ``labels`` of everything received in clear."""
    public_keys: dict[int, bytes]
    """Source -> its exchange public key."""
    initial_model: tuple[str, int] | None
    """``(model, seed)`` if this node is asked to build the initial model."""


def parse_receive_request(msg: Message) -> ReceiveRequest:
    received = _arrays(msg.content, RECEIVED)
    sources = _values(msg.content, SOURCES)
    public = {int(s): bytes(k) for s, k in zip(sources["src"], sources["public-keys"])}
    sealed = {src: received[f"sealed:{src}"].numpy() for src in public if f"sealed:{src}" in received}
    plain = {k: received[k].numpy() for k in _SAMPLE_FIELDS} if "ids" in received else None
    initial = None
    if INITIAL_MODEL in msg.content.config_records:
        asked = _values(msg.content, INITIAL_MODEL)
        initial = (str(asked["model"]), int(asked["seed"]))
    return ReceiveRequest(sealed, plain, public, initial)


def receive_reply(msg: Message, summary: NodeSummary, initial_model: ArrayRecord | None = None) -> Message:
    arrays = ArrayRecord(
        {
            "original-intensity": Array(summary.original_intensity),
            "original-labels": Array(summary.original_labels),
            "exchanged-intensity": Array(summary.exchanged_intensity),
            "exchanged-labels": Array(summary.exchanged_labels),
        }
    )
    for key, value in summary.sent_intensity.items():
        arrays[f"sent-intensity:{key}"] = Array(value)
        arrays[f"sent-labels:{key}"] = Array(summary.sent_labels[key])
    arrays["own-ids"] = Array(np.asarray(summary.own_ids, dtype=np.int64))
    for src, ids in summary.received_ids.items():
        arrays[f"received-ids:{src}"] = Array(np.asarray(ids, dtype=np.int64))
    metrics = MetricRecord({"num-train-examples": summary.num_train_examples})
    for src, count in summary.new_from.items():
        metrics[f"new-from:{src}"] = int(count)
    for key, distance in summary.sent_nn_distance.items():
        metrics[f"nn-distance:{key}"] = float(distance)
    reply = RecordDict({SUMMARIES: arrays, METRICS: metrics})
    if initial_model is not None:
        reply[INITIAL_MODEL] = initial_model
    return Message(reply, reply_to=msg)


def parse_receive(reply: Message) -> tuple[NodeSummary, ArrayRecord | None]:
    """The node's summary, and the initial model if it built one."""
    arrays = _arrays(reply.content, SUMMARIES)
    metrics = _values(reply.content, METRICS)
    names = {name: arrays[name].numpy() for name in _SUMMARY_NAMES}

    def by_key(prefix: str) -> dict[int, np.ndarray]:
        return {int(k.split(":", 1)[1]): arrays[k].numpy() for k in arrays if k.startswith(prefix)}

    summary = NodeSummary(
        original_intensity=names["original-intensity"],
        original_labels=names["original-labels"],
        exchanged_intensity=names["exchanged-intensity"],
        exchanged_labels=names["exchanged-labels"],
        sent_intensity=by_key("sent-intensity:"),
        sent_labels=by_key("sent-labels:"),
        num_train_examples=int(metrics["num-train-examples"]),
        new_from={int(k.split(":", 1)[1]): int(v) for k, v in metrics.items() if k.startswith("new-from:")},
        own_ids=arrays["own-ids"].numpy(),
        received_ids=by_key("received-ids:"),
        sent_nn_distance={
            int(k.split(":", 1)[1]): float(v) for k, v in metrics.items() if k.startswith("nn-distance:")
        },
    )
    initial = _arrays(reply.content, INITIAL_MODEL) if INITIAL_MODEL in reply.content.array_records else None
    return summary, initial


def concat_parts(
    parts: Sequence[tuple[int, np.ndarray, np.ndarray, np.ndarray]], image_shape: tuple[int, ...] = (28, 28)
) -> dict[str, np.ndarray]:
    """``[(src, ids, images, labels), ...]`` -> the ``ids``/``src``/``images``/``labels`` arrays of ``received``."""
    if not parts:
        return {
            "ids": np.zeros(0, np.int64),
            "src": np.zeros(0, np.int64),
            "images": np.zeros((0, *image_shape), np.uint8),
            "labels": np.zeros(0, np.int64),
        }
    return {
        "ids": np.concatenate([p[1] for p in parts]).astype(np.int64),
        "src": np.concatenate([np.full(len(p[1]), p[0], np.int64) for p in parts]),
        "images": np.concatenate([p[2] for p in parts]),
        "labels": np.concatenate([p[3] for p in parts]).astype(np.int64),
    }


# ------------------------------------------------------------ train / evaluate
@dataclass(frozen=True)
class TrainRequest:
    """What a node is asked to do in a ``train`` message."""

    arrays: ArrayRecord
    server_round: int
    proximal_mu: float
    """FedProx's proximal term (0: none)."""
    evaluate_first: bool
    """Evaluate the received model on the test set before training it."""
    correction: ArrayRecord | None = None
    """Added to the gradient at every local step (same keys as ``arrays``); ``None``: none."""


def train_content(arrays: ArrayRecord, config: ConfigRecord, correction: ArrayRecord | None = None) -> RecordDict:
    """The content of a ``train`` or ``evaluate`` message (without its ``run-config``)."""
    content = RecordDict({ARRAYS: arrays, CONFIG: config})
    if correction is not None:
        content[CORRECTION] = correction
    return content


def parse_train_request(msg: Message) -> TrainRequest:
    config = _values(msg.content, CONFIG)
    return TrainRequest(
        arrays=_arrays(msg.content, ARRAYS),
        server_round=int(config.get(SERVER_ROUND, 0)),
        proximal_mu=float(config.get(PROXIMAL_MU, 0.0)),
        evaluate_first=bool(config.get(EVALUATE_FIRST, False)),
        correction=msg.content.array_records.get(CORRECTION),
    )


def parse_evaluate_request(msg: Message) -> tuple[ArrayRecord, int]:
    """The model to evaluate and the round."""
    return _arrays(msg.content, ARRAYS), int(_values(msg.content, CONFIG).get(SERVER_ROUND, 0))


def train_reply(
    msg: Message,
    arrays: ArrayRecord,
    *,
    loss: float,
    seconds: float,
    num_examples: int,
    num_steps: int = 0,
    evaluation: Evaluation | None = None,
    device: str = "",
    extra: Mapping[str, float] | None = None,
) -> Message:
    """The trained model and its metrics; ``evaluation`` of the received model, if asked; where it trained.

    ``extra``: further metrics of the trained model, named as their columns (the membership attacks on the
    model the node sends, ``sent-mia-auc``, ...; DP-SGD's ``dp-epsilon``).
    """
    metrics = MetricRecord(
        {"train-loss": loss, "train-seconds": seconds, NUM_EXAMPLES: int(num_examples), NUM_STEPS: int(num_steps)}
    )
    if evaluation is not None:
        evaluation.write(metrics)
    for name, value in (extra or {}).items():
        metrics[name] = float(value)
    return Message(RecordDict({ARRAYS: arrays, METRICS: metrics, NODE: ConfigRecord({"device": device})}), reply_to=msg)


def reply_device(reply: Message) -> str:
    """The device a ``train`` reply's node trained on (``""`` from a node that does not say)."""
    record = reply.content.config_records.get(NODE)
    return "" if record is None else str(record.get("device", ""))


@dataclass(frozen=True)
class Evaluation:
    """What a node measured of a model: test loss and accuracy, and the membership attacks' results.

    ``attack`` maps metric names to values, named as the columns of
    ``metrics.csv`` (``mia-auc``, ``mia-tpr-1fpr``, ``rmia-auc``, ...:
    :func:`flower_dl.privacy.audit.attack_metrics`); empty when no attack ran.
    """

    loss: float
    accuracy: float
    attack: Mapping[str, float] = field(default_factory=dict)

    def write(self, metrics: MetricRecord) -> None:
        metrics["eval-loss"], metrics["eval-acc"] = float(self.loss), float(self.accuracy)
        for name, value in self.attack.items():
            metrics[name] = float(value)


def evaluate_reply(msg: Message, evaluation: Evaluation, *, num_examples: int) -> Message:
    metrics = MetricRecord({NUM_EXAMPLES: int(num_examples)})
    evaluation.write(metrics)
    return Message(RecordDict({METRICS: metrics}), reply_to=msg)


def reply_arrays(reply: Message) -> ArrayRecord:
    """The model a ``train`` reply carries."""
    return _arrays(reply.content, ARRAYS)


def num_steps(reply: Message) -> int:
    """The local SGD steps a ``train`` reply's model took (0 from a node that does not say)."""
    return int(_values(reply.content, METRICS).get(NUM_STEPS, 0))


def arrays_nbytes(record: ArrayRecord) -> int:
    """Payload bytes of a model: what one copy of it costs on the wire, framing left out."""
    return sum(int(np.prod(a.shape)) * np.dtype(a.dtype).itemsize for a in record.values())


def train_columns(reply: Message) -> dict[str, float]:
    """A ``train`` reply's metrics, named as the columns of ``metrics.csv``."""
    m = _values(reply.content, METRICS)
    columns = {
        "train-loss": m["train-loss"],
        "train-seconds": m["train-seconds"],
        "num-train-examples": m[NUM_EXAMPLES],
    }
    columns.update({k: m[k] for k in m if k.startswith(SENT_ATTACK_PREFIX) or k == DP_EPSILON})
    return columns


def evaluate_columns(reply: Message) -> dict[str, float]:
    """An ``evaluate`` reply's metrics (or a ``train`` reply's of the received model), named as in ``metrics.csv``."""
    m = _values(reply.content, METRICS)
    columns = {"accuracy": m["eval-acc"], "loss": m["eval-loss"]}
    columns.update({k: m[k] for k in m if k.startswith(("mia-", "rmia-"))})
    return columns
