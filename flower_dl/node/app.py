"""ClientApp: one node of the decentralized network.

The node owns its data (:mod:`flower_dl.node.state`) and answers the messages
of :mod:`flower_dl.protocol`:

``query.identify``  its ``partition-id`` (its place in the topology), size and exchange key;
``query.share``     the exchange phase: a sample of its original data for its neighbours,
                    sealed for each of them;
``query.receive``   what its neighbours sent; kept in its state and merged (deduplicated)
                    into its training set; replies with the summaries of the leakage
                    hook, never raw data (and, when asked, the initial model);
``train``           local SGD epochs on own + received data, as the message's config says
                    (first evaluating the received model, when asked: one message a round;
                    adding the correction it is sent, if any, at every step);
``evaluate``        accuracy and loss of the model it is sent, on its test set.

Everything a handler needs comes from the message (its run config, the
model, what to do) and the node's own config and state; the node never reads
the strategy's name.
"""

from __future__ import annotations

import os
import sys
import time
from typing import cast

import numpy as np
from flwr.app import ArrayRecord, Context, Message
from flwr.clientapp import ClientApp

from flower_dl import import_in_background, protocol
from flower_dl.exchange import crypto, identity
from flower_dl.exchange import plan as exchange
from flower_dl.node.state import Node, device_name, node_for, seed_of, seed_torch
from flower_dl.privacy import attack_data, mechanisms
from flower_dl.privacy import leakage as privacy

# torch is imported only by the train and evaluate handlers (and by the one
# query.receive that builds the initial model): on a SuperNode each message runs
# in a fresh process, and the other exchange-phase queries need no torch.

app = ClientApp()

FAULTS_ENV = "FLOWER_DL_FAULTS"
"""Testing aid: ``"stage:partition-id:round,..."`` makes that node raise there
(stages: share, train, evaluate; round 0 for share)."""


def _maybe_fail(stage: str, pid: int, server_round: int = 0) -> None:
    for fault in filter(None, os.environ.get(FAULTS_ENV, "").split(",")):
        f_stage, f_pid, f_round = fault.split(":")
        if (f_stage, int(f_pid), int(f_round)) == (stage, pid, server_round):
            raise RuntimeError(f"injected failure ({FAULTS_ENV}={fault})")


def _edge_context(context: Context) -> bytes:
    return f"run {context.run_id}".encode()


def _key_context(node: Node, context: Context) -> bytes:
    """What a signed exchange key is bound to: this run and this cell (:mod:`flower_dl.exchange.identity`)."""
    return f"run {context.run_id} cell {node.cell}".encode()


def _accepted(node: Node, context: Context, published: dict[int, bytes]) -> dict[int, bytes]:
    """The peers' exchange keys the node will use; with ``peer-keys``, only those whose signature verifies."""
    peers = node.peer_keys()
    return {j: identity.accept(key, j, _key_context(node, context), peers) for j, key in published.items()}


_TORCH_WARM_UP_STARTED = False


def _warm_up_torch_in_simulation_worker() -> None:
    """In a simulation worker, start importing torch in the background.

    A simulation runs the ClientApp in long-lived Ray workers: importing torch
    while the exchange phase runs keeps that import out of round 1
    (``benchmarks/bench_round_time.py`` measures the start-up). A SuperNode
    runs each message in a fresh process whose queries need no torch, so
    nothing is started there.
    """
    global _TORCH_WARM_UP_STARTED
    if "ray" in sys.modules and "torch" not in sys.modules and not _TORCH_WARM_UP_STARTED:
        _TORCH_WARM_UP_STARTED = True
        import_in_background("flower_dl.node.training")


# ------------------------------------------------------------ exchange phase
@app.query("identify")
def identify(msg: Message, context: Context) -> Message:
    """Tell the server this node's ``partition-id``, data size and exchange public key."""
    _warm_up_torch_in_simulation_worker()
    node = node_for(msg, context)
    node.start_cell()
    node.check_data()  # a config this node's data cannot serve fails the run here, before any training
    published = identity.publish(node.key_pair().public_bytes, node.partition_id, _key_context(node, context),
                                 node.identity())  # fmt: skip
    spec = node.spec()
    info = protocol.NodeInfo(
        node.partition_id, len(node.own_ids()), published, data_digest=node.data_digest(),
        mia_samples=node.mia_samples, input_shape=spec.input_shape, num_classes=spec.num_classes,
    )  # fmt: skip
    return protocol.identify_reply(msg, info)


@app.query("share")
def share(msg: Message, context: Context) -> Message:
    """Draw ``share-ratio`` of the original samples for the neighbours named in the message."""
    node = node_for(msg, context)
    cfg, pid = node.cfg, node.partition_id
    public_keys = _accepted(node, context, protocol.parse_share_request(msg))
    _maybe_fail("share", pid)
    rng = np.random.default_rng(seed_of(cfg.seed, pid, 7))
    shares = exchange.draw_shares(node.own_ids(), cfg.share_ratio, list(public_keys), cfg.exchange_mode, rng)
    drawn = _apply_mechanism(node, {key: node.own_samples(positions) for key, positions in shares.items()})
    _, own_images, _ = node.own_samples()
    node.store_sent(
        {key: ids for key, (ids, _, _) in drawn.items()},
        {key: privacy.intensity_distribution(images) for key, (_, images, _) in drawn.items()},
        {key: privacy.label_distribution(labels, node.spec().num_classes) for key, (_, _, labels) in drawn.items()},
        {key: _nn_distance(ids, images, own_images) for key, (ids, images, _) in drawn.items()},
    )
    if not cfg.exchange_encryption:
        return protocol.share_reply_plain(msg, drawn)
    # one ciphertext per neighbour: only that neighbour can open it
    keys = node.key_pair()
    sealed, counts = {}, {}
    for j, public in public_keys.items():
        ids, images, labels = exchange.payload_for(drawn, j)
        sealed[j] = crypto.seal_samples(keys, public, pid, j, ids, images, labels, context=_edge_context(context))
        counts[j] = len(ids)
    return protocol.share_reply_sealed(msg, sealed, counts)


def _nn_distance(ids: np.ndarray, images: np.ndarray, own_images: np.ndarray) -> float:
    """``nn-distance`` of a share: 0 for copies (items that keep their sample ids), else the nearest-image search.

    The search costs a matrix product of the share against all the node's
    images; copies need none, so the default ``raw`` exchange pays nothing.
    """
    if len(ids) == 0 or not mechanisms.is_fresh(ids).any():
        return 0.0
    return mechanisms.nn_distance(images, own_images)


def _apply_mechanism(
    node: Node, drawn: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]
) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """What is sent for each share: the drawn samples (``raw``), noisy copies or class means (``exchange-mechanism``)."""
    cfg, pid = node.cfg, node.partition_id
    if cfg.exchange_mechanism == "raw":
        return drawn
    rng = np.random.default_rng(seed_of(cfg.seed, pid, 8))
    _, own_images, own_labels = node.own_samples()
    out, issued = {}, 0
    for key, (ids, images, labels) in sorted(drawn.items()):
        sent_images, sent_labels, sent_ids = mechanisms.apply_mechanism(
            cfg.exchange_mechanism, images, labels, ids, node=pid, rng=rng, noise_std=cfg.exchange_noise,
            mixup_size=cfg.mixup_size, own_images=own_images, own_labels=own_labels, fresh_start=issued,
        )  # fmt: skip
        issued += len(ids)
        out[key] = (sent_ids, sent_images, sent_labels)
    return out


@app.query("receive")
def receive(msg: Message, context: Context) -> Message:
    """Keep what the neighbours sent; reply with the leakage hook's summaries."""
    node = node_for(msg, context)
    request = protocol.parse_receive_request(msg)
    # in clear, the server always relays the ids/src/images/labels arrays (protocol.receive_request): plain is set
    plain = cast("dict[str, np.ndarray]", request.plain)
    node.store_received(_open(request, node, context) if node.cfg.exchange_encryption else plain)
    reply_summary = summary(node)
    initial = None
    if request.initial_model is not None:
        from flower_dl.node.models import initial_arrays  # imports torch (in a simulation worker: already under way)

        spec = node.spec()
        initial = initial_arrays(*request.initial_model, input_shape=spec.input_shape, num_classes=spec.num_classes)
    return protocol.receive_reply(msg, reply_summary, initial)


def summary(node: Node) -> privacy.NodeSummary:
    """The leakage hook's summaries of a node, from its own data and what it holds after the exchange."""
    _, own_images, own_labels = node.own_samples()
    train, classes = node.train_set(), node.spec().num_classes
    return privacy.NodeSummary(
        original_intensity=privacy.intensity_distribution(own_images),
        original_labels=privacy.label_distribution(own_labels, classes),
        exchanged_intensity=privacy.intensity_distribution(train.images),
        exchanged_labels=privacy.label_distribution(train.labels, classes),
        sent_intensity=node.sent("intensity"),
        sent_labels=node.sent("labels"),
        num_train_examples=len(train.ids),
        new_from=train.new_per_source,
        own_ids=node.own_ids(),
        received_ids=node.received_ids(),
        sent_nn_distance={key: float(v[0]) for key, v in node.sent("nn-distance").items()},
    )


def _open(request: protocol.ReceiveRequest, node: Node, context: Context) -> dict[str, np.ndarray]:
    """Decrypt what each neighbour sealed for this node into ids/src/images/labels arrays."""
    keys = node.key_pair()
    parts = []
    for src, public in _accepted(node, context, request.public_keys).items():
        ids, images, labels = crypto.open_samples(
            keys, public, src, node.partition_id, request.sealed[src], context=_edge_context(context)
        )
        parts.append((src, ids, images, labels))
    _, own_images, _ = node.own_samples()
    return protocol.concat_parts(parts, own_images.shape[1:])


# --------------------------------------------------------------- training
@app.train()
def train(msg: Message, context: Context) -> Message:
    """Train the received model for ``local-epochs`` epochs on own + received data."""
    node = node_for(msg, context)
    cfg = node.cfg
    request = protocol.parse_train_request(msg)
    _maybe_fail("train", node.partition_id, request.server_round)
    import torch

    from flower_dl.node import training

    train_x, train_y, _test_x, _test_y = node.tensors()
    model = node.model(request.arrays, train_x.device)
    # the received model is the previous round's result (for D-PSGD: after its mixing): evaluating it
    # here saves the round a second message to every node
    evaluation = _evaluate(node, model) if request.evaluate_first else None
    seed = seed_of(cfg.seed, node.partition_id, request.server_round)
    seed_torch(seed, train_x.device)  # dropout masks
    generator = torch.Generator().manual_seed(seed)
    correction = None if request.correction is None else request.correction.to_torch_state_dict()
    started = time.perf_counter()
    loss = training.train(
        model, train_x, train_y, epochs=cfg.local_epochs, lr=cfg.lr, momentum=cfg.momentum,
        batch_size=cfg.batch_size, generator=generator, proximal_mu=request.proximal_mu, correction=correction,
        dp=node.dp(),
    )  # fmt: skip
    seconds = time.perf_counter() - started
    arrays = ArrayRecord(model.state_dict())  # copied to the CPU, as bytes: the reused module stays where it is
    steps = training.num_steps(len(train_y), cfg.local_epochs, cfg.batch_size)
    return protocol.train_reply(
        msg, arrays, loss=loss, seconds=seconds, num_examples=len(train_y), num_steps=steps, evaluation=evaluation,
        device=device_name(train_x.device), extra=_sent_model_metrics(node, model, request.server_round),
    )  # fmt: skip


def _sent_model_metrics(node: Node, model, server_round: int) -> dict[str, float]:
    """What a neighbour learns from the model this node sends in ``server_round``: attacks and DP's epsilon.

    The attacks (:mod:`flower_dl.privacy.audit`) run at the rounds ``mia-every``
    names; the epsilon (``dp-epsilon``) every round, over the node's local
    training so far (``server_round`` rounds of ``local-epochs`` epochs of
    Poisson-sampled steps on its training set; an upper bound for a node
    that was not asked to train in every round).
    """
    cfg = node.cfg
    out: dict[str, float] = {}
    if attack_data.attacked_round(server_round, cfg.mia_every, cfg.num_server_rounds):
        from flower_dl.privacy import audit

        out.update(audit.attack_metrics(node, model, prefix=protocol.SENT_ATTACK_PREFIX, chunks=server_round))
    if node.dp() is not None:
        from flower_dl.privacy import dp

        n = len(node.train_set().ids)
        steps = server_round * cfg.local_epochs * dp.steps_per_epoch(n, cfg.batch_size)
        out[protocol.DP_EPSILON] = dp.epsilon(cfg.dp_noise_multiplier, dp.sample_rate(n, cfg.batch_size), steps,
                                              cfg.dp_delta)  # fmt: skip
    return out


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Evaluate the received model on the test set (the last round's: also the strong membership attack)."""
    node = node_for(msg, context)
    arrays, server_round = protocol.parse_evaluate_request(msg)
    _maybe_fail("evaluate", node.partition_id, server_round)
    _, _, test_x, test_y = node.tensors()
    model = node.model(arrays, test_x.device)
    final = server_round == node.cfg.num_server_rounds
    evaluation = _evaluate(node, model, chunks=server_round if final else 0)
    return protocol.evaluate_reply(msg, evaluation, num_examples=len(test_y))


def _evaluate(node: Node, model, chunks: int = 0) -> protocol.Evaluation:
    """Accuracy and loss of ``model`` on the node's test set, and the membership attacks on it (``mia-samples``).

    The loss-threshold attack (Yeom et al. 2018) runs at every evaluation;
    with ``chunks`` > 0 (the final model, trained for that many rounds) also
    RMIA (:mod:`flower_dl.privacy.audit`).
    """
    from flower_dl.node import training
    from flower_dl.privacy import audit

    _, _, test_x, test_y = node.tensors()
    loss, acc = training.evaluate(model, test_x, test_y)
    return protocol.Evaluation(loss, acc, audit.attack_metrics(node, model, chunks=chunks))
