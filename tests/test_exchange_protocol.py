"""The exchange phase's messages, in process: what the server relays, and what it can read.

A fake Grid hands each message straight to the ClientApp's handler of the
addressed node (each node with its own Context), and keeps every message the
server sends or receives, so the test can look at all the bytes the server
handles. The real-Flower path is covered by the simulation tests.
"""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Message, RecordDict

from flower_dl import protocol
from flower_dl.config import RunConfig
from flower_dl.data.datasets import load_dataset
from flower_dl.exchange.crypto import DecryptionError, KeyPair, open_samples
from flower_dl.node import app as client_app
from flower_dl.node.state import Node
from flower_dl.privacy import leakage as privacy
from flower_dl.server.app import build_topology, discover_nodes, run_exchange

from .conftest import FakeGrid, as_node, python_output

INITIAL_MODEL_KEY = protocol.INITIAL_MODEL

pytestmark = pytest.mark.usefixtures("task_identity")


def _exchange(node_config=None, tamper=None, **changes):
    cfg = RunConfig(**changes)
    topology = build_topology(cfg)
    grid = FakeGrid(cfg, node_config, tamper)
    nodes = discover_nodes(grid, cfg)
    exchanged = run_exchange(grid, cfg, topology, nodes)
    report = privacy.exchange_report(
        cfg.share_ratio, topology.neighbours, exchanged.summaries, exchanged.sizes, exchanged.failed
    )
    return cfg, grid, nodes.node_ids, nodes.public_keys, exchanged, report


def _node(grid: FakeGrid, cfg: RunConfig, pid: int) -> Node:
    """The node of partition-id ``pid`` as its handlers see it."""
    return Node(grid.contexts[1000 + pid], cfg, pid)


def _sent_ids(grid: FakeGrid, cfg: RunConfig, pid: int) -> np.ndarray:
    """Ids of what node ``pid`` sent (its first share), from its own state."""
    return next(iter(_node(grid, cfg, pid).sent("ids").values()))


def _private_key(grid: FakeGrid, cfg: RunConfig, pid: int) -> KeyPair:
    return _node(grid, cfg, pid).key_pair()


def _all_bytes(records: list[RecordDict]) -> bytes:
    chunks = []
    for rec in records:
        for arr_rec in rec.array_records.values():
            for arr in arr_rec.values():
                chunks.append(arr.data)
        for cfg_rec in rec.config_records.values():
            for value in cfg_rec.values():
                if isinstance(value, bytes):
                    chunks.append(value)
                elif isinstance(value, list):
                    chunks.extend(v for v in value if isinstance(v, bytes))
    return b"".join(chunks)


@pytest.mark.parametrize("mechanism", ["raw", "noise", "mixup"])
def test_the_server_never_handles_a_sent_item_whatever_the_mechanism(mechanism) -> None:
    cfg, grid, node_ids, _keys, _, _ = _exchange(share_ratio=0.5, digits_per_node=2, exchange_mechanism=mechanism)
    seen = _all_bytes(grid.seen)
    checked = 0
    for pid in node_ids:  # what each node received, decrypted: exactly what was sent to it
        for image in _node(grid, cfg, pid).received()["images"][:20]:
            window = image.tobytes()[14 * 28 : 14 * 28 + 28]
            if window.strip(b"\0"):
                checked += 1
                assert window not in seen, f"an item sent to node {pid} crossed the server in clear ({mechanism})"
    assert checked > 50


def test_the_server_never_handles_a_sent_image(tmp_path) -> None:
    cfg, grid, node_ids, _keys, _, report = _exchange(share_ratio=0.5, digits_per_node=2)
    data = load_dataset(cfg.dataset)
    seen = _all_bytes(grid.seen)
    sent_ids = {pid: _sent_ids(grid, cfg, pid) for pid in node_ids}
    assert sum(len(v) for v in sent_ids.values()) > 0
    for pid, ids in sent_ids.items():
        for sid in ids[:25]:
            image = data.train_images[sid].tobytes()
            window = image[14 * 28 : 14 * 28 + 28]  # the middle row: never all-black for a digit
            assert window.strip(b"\0"), "test needs a non-blank row"
            assert window not in seen, f"node {pid}'s image {sid} crossed the server in clear"
    # and yet every neighbour got them: node 0 holds what node 1 sent, after decryption
    received = _node(grid, cfg, 0).received()
    got = received["ids"][received["src"] == 1]
    assert np.array_equal(np.sort(got), np.sort(sent_ids[1]))
    assert all(e["samples-sent"] == len(sent_ids[e["src"]]) for e in report.edges)


def test_without_encryption_the_server_sees_images() -> None:
    cfg, grid, *_ = _exchange(share_ratio=0.5, digits_per_node=2, exchange_encryption=False)
    sid = _sent_ids(grid, cfg, 1)[0]
    row = load_dataset(cfg.dataset).train_images[sid].tobytes()[14 * 28 : 15 * 28]
    assert row in _all_bytes(grid.seen)  # the control: the check above can fail


def test_a_node_cannot_open_what_was_sealed_for_another() -> None:
    cfg, grid, _node_ids, keys, *_ = _exchange(share_ratio=0.3, digits_per_node=2)
    # node 0 sealed a sample for node 1; node 2 (not its addressee) tries with everything public
    share_reply = next(rec for rec in grid.seen if "share" in rec and "sealed:1" in rec["share"])
    blob = share_reply["share"]["sealed:1"].numpy()
    intruder = _private_key(grid, cfg, 2)
    with pytest.raises(DecryptionError):
        open_samples(intruder, keys[0], 0, 1, blob, context=b"run 7")
    addressee = _private_key(grid, cfg, 1)
    ids, _, _ = open_samples(addressee, keys[0], 0, 1, blob, context=b"run 7")
    assert len(ids) == int(0.3 * 800)  # k = 2: 800 samples on node 0


@pytest.mark.parametrize("mode", ["broadcast", "per-neighbour"])
def test_share_ratio_one_broadcast_gives_every_neighbour_everything(mode) -> None:
    cfg, grid, _node_ids, _, _, report = _exchange(share_ratio=1.0, digits_per_node=2, exchange_mode=mode)
    data = load_dataset(cfg.dataset)
    from flower_dl.data.datasets import partition_indices

    parts = partition_indices(data.train_labels, cfg.partitioner, 5, digits_per_node=2)
    topology = build_topology(cfg)
    for i in range(5):
        for j in topology.neighbours[i]:
            held = set(_node(grid, cfg, j).received()["ids"].tolist())
            assert set(parts[i].tolist()) <= held
    assert report.leakage[0] > 0


def test_share_ratio_zero_sends_nothing_and_changes_nothing() -> None:
    cfg, grid, node_ids, _, _, report = _exchange(share_ratio=0.0)
    assert all(e["samples-sent"] == 0 for e in report.edges)
    assert set(report.leakage.values()) == {0.0}
    for pid in node_ids:
        node = _node(grid, cfg, pid)
        assert np.array_equal(node.train_set().ids, node.own_ids())


def test_leakage_rises_with_share_ratio_and_falls_with_digits_per_node() -> None:
    """The original study's two findings, on the embedded data and the study's tree."""

    def total(share: float, k: int) -> float:
        *_, report = _exchange(share_ratio=share, digits_per_node=k)
        return sum(report.leakage.values())

    by_share = [total(s, 2) for s in (0.1, 0.2, 0.5, 1.0)]
    assert by_share == sorted(by_share) and by_share[0] > 0
    by_digits = [total(0.2, k) for k in (2, 4, 6, 8)]
    assert by_digits == sorted(by_digits, reverse=True)


def test_training_is_reproducible_given_the_seed() -> None:
    """The same config, seed, node and round give bit-identical models (CPU)."""
    from flwr.app import ArrayRecord, ConfigRecord

    from flower_dl.node.models import build_model

    cfg, grid, node_ids, *_ = _exchange(share_ratio=0.2, local_epochs=1)
    initial = ArrayRecord(build_model(cfg.model, seed=cfg.seed).state_dict())

    def train_once(pid: int, server_round: int) -> list:
        content = protocol.train_content(initial, ConfigRecord({protocol.SERVER_ROUND: server_round}))
        content = protocol.with_run_config(content, protocol.run_config_record(cfg.to_run_config()))
        msg = Message(content, dst_node_id=node_ids[pid], message_type=protocol.TRAIN)
        with as_node(node_ids[pid]):
            reply = client_app.train(msg, grid.contexts[node_ids[pid]])
        return [a.copy() for a in reply.content["arrays"].to_numpy_ndarrays()], reply.content["metrics"]["train-loss"]

    first, loss1 = train_once(2, 1)
    again, loss2 = train_once(2, 1)
    assert loss1 == loss2 and all(np.array_equal(a, b) for a, b in zip(first, again))
    other_round, _ = train_once(2, 2)
    assert not all(np.array_equal(a, b) for a, b in zip(first, other_round))


def _state(record) -> dict:
    return {key: arr.numpy() for key, arr in record.items()}


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_one_node_builds_the_initial_model_the_server_would(model) -> None:
    """The server does not import torch: the first node that took part builds the seeded initial model."""
    from flower_dl.node.models import build_model
    from flower_dl.server.app import initial_model

    cfg, grid, _node_ids, _, exchanged, _ = _exchange(model=model, seed=5)
    asked = [rec for rec in grid.seen if INITIAL_MODEL_KEY in rec.config_records]
    assert len(asked) == 1 and dict(asked[0][INITIAL_MODEL_KEY]) == {"model": model, "seed": 5}
    expected = {k: v.numpy() for k, v in build_model(model, seed=5).state_dict().items()}
    got = _state(initial_model(cfg, exchanged.initial))
    assert list(got) == list(expected)  # the state dict's order
    assert all(np.array_equal(got[k], expected[k]) and got[k].dtype == expected[k].dtype for k in expected)
    assert not all(np.array_equal(got[k], v) for k, v in _state(initial_model(cfg.replace(seed=6), None)).items())


def test_the_initial_model_comes_from_the_next_node_if_the_first_failed(monkeypatch) -> None:
    monkeypatch.setenv(client_app.FAULTS_ENV, "share:0:0")
    cfg, grid, _node_ids, _, exchanged, _ = _exchange()
    assert set(exchanged.failed) == {0}
    asked = [rec for rec in grid.seen if INITIAL_MODEL_KEY in rec.config_records]
    assert len(asked) == 1 and exchanged.initial is not None
    # node 1 (the first that took part) built it; the server's own fallback builds the same model
    from flower_dl.server.app import initial_model

    local = _state(initial_model(cfg, None))
    assert all(np.array_equal(v, local[k]) for k, v in _state(exchanged.initial).items())


def test_the_server_app_does_not_import_torch() -> None:
    """Importing the ServerApp (and its strategies) leaves torch out: ~2 s of CPU and ~300 MB."""
    code = "import sys, flower_dl.server.app, flower_dl.strategies.decentralized; print('torch' in sys.modules)"
    assert python_output(code) == "False"


def test_exposure_and_nn_distance_on_a_three_node_line() -> None:
    """Disjoint partitions, broadcast: node i's exposure is its share size over its size, by hand."""
    from flower_dl.exchange.plan import share_size

    kwargs = dict(num_nodes=3, topology="line", partitioner="digits-per-node-disjoint", digits_per_node=2)
    cfg, grid, node_ids, _, _exchanged, report = _exchange(share_ratio=0.25, **kwargs)
    for pid in node_ids:
        n = len(_node(grid, cfg, pid).own_ids())
        assert report.exposure[pid] == pytest.approx(share_size(n, 0.25) / n)
        assert report.nn_distance[pid] == 0.0  # raw: the sent items are the node's own images
    edge = next(e for e in report.edges if (e["src"], e["dst"]) == (1, 0))
    assert edge["exposed-fraction"] == pytest.approx(report.exposure[1]) and edge["nn-distance"] == 0.0
    # the middle node receives from both ends: its exposure is still only its own samples others got
    _, _, _, _, _, none = _exchange(share_ratio=0.0, **kwargs)
    assert none.exposure == {0: 0.0, 1: 0.0, 2: 0.0}


def test_noise_zero_is_raw_and_mixup_of_one_sends_real_images_under_fresh_ids() -> None:
    from flower_dl.privacy.mechanisms import is_fresh

    raw_cfg, raw_grid, *_ = _exchange(share_ratio=0.3, digits_per_node=2)
    noise_cfg, noise_grid, *_ = _exchange(
        share_ratio=0.3, digits_per_node=2, exchange_mechanism="noise", exchange_noise=0.0
    )
    for pid in range(5):
        a, b = _node(raw_grid, raw_cfg, pid).received(), _node(noise_grid, noise_cfg, pid).received()
        assert all(np.array_equal(a[k], b[k]) for k in ("ids", "src", "images", "labels"))
    cfg, grid, _, _, _, report = _exchange(share_ratio=0.3, digits_per_node=2, exchange_mechanism="mixup", mixup_size=1)
    got = _node(grid, cfg, 0).received()
    assert len(got["ids"]) > 0 and is_fresh(got["ids"]).all()
    assert all(v == 0.0 for v in report.nn_distance.values()) and all(v == 0.0 for v in report.exposure.values())
    _, _, _, _, _, noisy = _exchange(share_ratio=0.3, digits_per_node=2, exchange_mechanism="noise", exchange_noise=0.3)
    assert all(0.1 < v < 0.3 for v in noisy.nn_distance.values())  # RMS pixel distance, pixels in [0, 1]
    assert all(v == 0.0 for v in noisy.exposure.values())  # nothing sent is a copy


def test_a_mixup_size_above_a_nodes_smallest_class_stops_the_run_at_discovery() -> None:
    with pytest.raises(RuntimeError, match="mixup-size: 500 is larger than node 0's smallest class"):
        _exchange(share_ratio=0.3, digits_per_node=2, exchange_mechanism="mixup", mixup_size=500)


def test_mia_samples_above_what_a_node_holds_is_capped_at_discovery(caplog) -> None:
    """A default that cannot hold for the data is settled before training: capped, said once, recorded."""
    cfg = RunConfig(share_ratio=0.3, digits_per_node=2, mia_samples=900)
    grid = FakeGrid(cfg, None, None)
    with caplog.at_level("WARNING", logger="flwr"):
        nodes = discover_nodes(grid, cfg)
    for pid in range(cfg.num_nodes):
        node = _node(grid, cfg, pid)
        _, _, labels = node.own_samples()
        _, test_labels = node.test_set()
        supply = min(len(labels), int(np.isin(test_labels, np.unique(labels)).sum()))  # by hand
        assert nodes.mia_samples[pid] == node.mia_samples == supply < 900
        members, nonmembers = node.attack_samples()
        assert len(members) == len(nonmembers) == supply
    warnings = [r.getMessage() for r in caplog.records if "mia-samples" in r.getMessage()]
    assert len(warnings) == 1 and "capped to" in warnings[0] and "on node 4" in warnings[0]
    assert discover_nodes(grid, cfg.replace(mia_samples=50)).mia_samples == dict.fromkeys(range(5), 50)


def _swap_keys_for(victim: int, impostor_key: bytes | None = None):
    """A relay that, in ``victim``'s share request, swaps its two first neighbours' keys (or plants its own)."""

    def tamper(msg: Message) -> None:
        if msg.metadata.message_type != protocol.SHARE or msg.metadata.dst_node_id != 1000 + victim:
            return
        record = msg.content[protocol.EXCHANGE]
        keys = list(record["public-keys"])
        if impostor_key is None:
            keys[0], keys[1] = keys[1], keys[0]
        else:
            keys[0] = impostor_key
        record["public-keys"] = keys

    return tamper


def test_signed_exchange_keys_let_a_node_refuse_a_swapped_key(tmp_path) -> None:
    from flower_dl.exchange.identity import write_keys

    write_keys(5, tmp_path)

    def node_config(pid: int) -> dict[str, str]:
        return {"identity-key": str(tmp_path / f"node-{pid}.key"), "peer-keys": str(tmp_path / "peer-keys.txt")}

    # honest relay: the signed keys verify and the exchange is the unsigned one's
    cfg, grid, *_ = _exchange(node_config=node_config, share_ratio=0.3, digits_per_node=2)
    _, plain_grid, *_ = _exchange(share_ratio=0.3, digits_per_node=2)
    for pid in range(5):
        assert np.array_equal(_node(grid, cfg, pid).received()["ids"], _node(plain_grid, cfg, pid).received()["ids"])
    # node 0's neighbours are 1, 2, 3: the relay swaps 1's and 2's keys in node 0's request
    _, _, _, _, exchanged, _ = _exchange(
        node_config=node_config, tamper=_swap_keys_for(0), share_ratio=0.3, digits_per_node=2
    )
    assert "node 1's exchange key does not verify against its key in peer-keys" in exchanged.failed[0]
    assert set(exchanged.failed) == {0}  # node 0 refused to seal; the others went on


def test_without_peer_keys_a_key_swapping_relay_reads_the_exchange() -> None:
    """docs/failures-and-privacy.md's warning: unauthenticated keys let an active relay plant its own and open the share."""
    relay = KeyPair.generate()
    cfg, grid, _, public_keys, _, _ = _exchange(
        tamper=_swap_keys_for(0, relay.public_bytes), share_ratio=0.3, digits_per_node=2
    )
    share = next(
        m for m in grid.seen if protocol.SHARE_RECORD in m.array_records or protocol.SHARE_RECORD in m.config_records
    )
    sealed = next(v for k, v in share[protocol.SHARE_RECORD].items() if k == "sealed:1")
    ids, images, _ = open_samples(relay, public_keys[0], 0, 1, sealed.numpy(), context=b"run 7")
    assert len(ids) > 0 and np.array_equal(np.sort(ids), np.sort(_sent_ids(grid, cfg, 0)))
    assert images.shape == (len(ids), 28, 28) and images.any()  # the relay sees the images themselves


def test_many_failed_identifications_stay_one_readable_line() -> None:
    from flower_dl.server.app import _first_failures

    failed = {n: f"mia-samples: 200 is more than node {n} can supply" for n in range(1000)}
    text = _first_failures(failed)
    assert text.count("node") == 3 * 2 and text.endswith("; and 997 more")
    assert _first_failures({1: "x"}) == "node 1: x"


def test_a_node_process_imports_neither_scipy_nor_networkx_nor_torch():
    # every ClientApp process (each simulation worker, each SuperNode message) pays for what it imports;
    # divergences, graphs and mixing are the server's, torch waits for the first train or evaluate message
    code = (
        "import sys, flower_dl.node.app\n"
        "from flower_dl.config import RunConfig\n"
        "RunConfig.from_run_config({'mixing-schedule': 'epidemic', 'num-nodes': 8, 'topology': 'ring'})\n"
        "print(sorted(m for m in ('scipy', 'networkx', 'torch') if m in sys.modules))\n"
    )
    assert python_output(code) == "[]"
