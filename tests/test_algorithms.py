"""The decentralized algorithms' update rules on a problem solved by hand: node i minimises 1/2 ||x - a_i||^2.

With K local SGD steps of size lr from x, a node ends at ``z = rho x + (1 - rho)(a_i - c_i)``,
``rho = (1 - lr)^K`` (``c_i = 0`` without gradient tracking), so every fixed point below is a
linear solve. The server halves are the very functions the strategies call (``dpsgd_round``,
``kgt_round``, ``choco_round``); only the local steps are numpy here.
"""

from __future__ import annotations

import numpy as np
import pytest

from flower_dl.strategies.choco import choco_round
from flower_dl.strategies.decentralized import dpsgd_round
from flower_dl.strategies.gradient_tracking import kgt_round
from flower_dl.topology import STUDY_EDGES, build_graph, compressed, compression, mixing_matrix

LR, K = 0.1, 5
RHO = (1 - LR) ** K


@pytest.fixture(scope="module")
def W() -> np.ndarray:
    return mixing_matrix(build_graph("edges", 5, edges=STUDY_EDGES), "metropolis")


@pytest.fixture(scope="module")
def A() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(5, 3)) * 3


def local_steps(X: np.ndarray, A: np.ndarray, C: np.ndarray | None = None) -> np.ndarray:
    """K SGD steps of size LR on 1/2 ||z - a_i||^2 (+ the correction c_i), one by one."""
    Z = X.copy()
    C = np.zeros_like(X) if C is None else C
    for _ in range(K):
        Z = Z - LR * ((Z - A) + C)
    return Z


ALL = np.ones(5, dtype=bool)


def test_dpsgd_is_biased_by_the_predicted_amount(W, A) -> None:
    X = np.zeros_like(A)
    for _ in range(400):
        X, sent = dpsgd_round([W], local_steps(X, A), ALL)
    # fixed point of X = W (rho X + (1 - rho) A)
    predicted = (1 - RHO) * np.linalg.solve(np.eye(5) - RHO * W, W @ A)
    np.testing.assert_allclose(X, predicted, atol=1e-9)
    bias = np.abs(predicted - A.mean(axis=0)).max()
    assert bias > 0.1  # the nodes do not agree on mean(a) ...
    np.testing.assert_allclose(X.mean(axis=0), A.mean(axis=0), atol=1e-9)  # ... though their average does
    assert sent.tolist() == [3, 1, 2, 1, 1]  # one model to each neighbour: the tree's degrees


def test_gradient_tracking_converges_to_the_mean_and_keeps_the_trackers_summing_to_zero(W, A) -> None:
    X, C = np.zeros_like(A), np.zeros_like(A)
    step = np.full(5, K * LR)
    for _ in range(1500):
        X, C, sent = kgt_round([W], X, local_steps(X, A, C), C, step, ALL)
        np.testing.assert_allclose(C.sum(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(X, np.tile(A.mean(axis=0), (5, 1)), atol=1e-6)
    np.testing.assert_allclose(C, A - A.mean(axis=0), atol=1e-6)  # c_i: the mean gradient minus node i's
    assert sent.tolist() == [6, 2, 4, 2, 2]  # model and tracker to each neighbour


def test_gradient_tracking_survives_a_node_missing_rounds(W, A) -> None:
    X, C = np.zeros_like(A), np.zeros_like(A)
    step = np.full(5, K * LR)
    for r in range(1500):
        arrived = ALL.copy()
        if r % 3 == 0:
            arrived[2] = False  # node 2's reply is lost every third round
        Z = local_steps(X, A, C)
        Z[~arrived] = X[~arrived]
        X_before, C_before = X.copy(), C.copy()
        X, C, sent = kgt_round([W], X, Z, C, step, arrived)
        if not arrived[2]:
            assert np.array_equal(X[2], X_before[2]) and np.array_equal(C[2], C_before[2]) and sent[2] == 0
        np.testing.assert_allclose(C.sum(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(X, np.tile(A.mean(axis=0), (5, 1)), atol=1e-6)


def test_gradient_tracking_with_several_gossip_steps_and_a_time_varying_schedule(W, A) -> None:
    from flower_dl.strategies.base import GossipSchedule

    schedule = GossipSchedule("random-matching", 2, seed=3, edges=tuple(map(tuple, [(0, 1), (0, 2), (0, 3), (2, 4)])))
    X, C = np.zeros_like(A), np.zeros_like(A)
    step = np.full(5, K * LR)
    for r in range(1, 1500):
        X, C, _ = kgt_round(schedule.matrices(r, W), X, local_steps(X, A, C), C, step, ALL)
    np.testing.assert_allclose(X, np.tile(A.mean(axis=0), (5, 1)), atol=1e-6)


def test_choco_with_identity_compression_and_gamma_one_is_dpsgd(W, A) -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(5, 40)).astype(np.float32)
    X_hat = rng.normal(size=(5, 40)).astype(np.float32)  # any public copies: they are overwritten
    arrived = np.array([True, True, False, True, True])

    def none(rows, step):
        return compression.compress_matrix(rows, "none")

    chocoed, _, sent_bytes = choco_round([W, W], X, X_hat, 1.0, ALL, none)
    dpsgd, sent = dpsgd_round([W, W], X, ALL)
    np.testing.assert_allclose(chocoed, dpsgd, atol=1e-6)
    assert sent_bytes.tolist() == (sent * 40 * 4).tolist()
    # a missing node: it keeps its model and sends nothing; the others use its public copy
    out, hats, sent_bytes = choco_round([W], X, X_hat, 1.0, arrived, none)
    assert np.array_equal(out[2], X[2]) and np.array_equal(hats[2], X_hat[2]) and sent_bytes[2] == 0


def test_choco_with_top_k_reaches_its_predicted_fixed_point(W, A) -> None:
    gamma = 0.3

    def top_k(rows, step):
        return compression.compress_matrix(rows, "top-k", ratio=1 / 3)

    X, X_hat = np.zeros_like(A), np.zeros_like(A)
    for _ in range(3000):
        X, X_hat, sent_bytes = choco_round([W], local_steps(X, A), X_hat, gamma, ALL, top_k)
    # at the fixed point nothing is left to send: x_hat = Z = rho X + (1 - rho) A, and
    # X = M Z with M = I + gamma (W - I) (for gamma = 1, D-PSGD's fixed point)
    M = np.eye(5) + gamma * (W - np.eye(5))
    predicted = (1 - RHO) * np.linalg.solve(np.eye(5) - RHO * M, M @ A)
    np.testing.assert_allclose(X, predicted, atol=1e-6)
    np.testing.assert_allclose(X_hat, RHO * X + (1 - RHO) * A, atol=1e-6)
    assert sent_bytes.tolist() == [3 * 8, 8, 2 * 8, 8, 8]  # one coordinate of three: 4-byte index + 4-byte value


def test_gossip_schedule_validates_and_rederives_each_round(W) -> None:
    from flower_dl.strategies.base import GossipSchedule

    edges = ((0, 1), (0, 2), (0, 3), (2, 4))
    for name in ("random-matching", "one-peer-exponential", "epidemic"):
        schedule = GossipSchedule(name, 3, seed=7, epidemic_peers=2, edges=edges)
        first = schedule.matrices(4, W)
        again = GossipSchedule(name, 3, seed=7, epidemic_peers=2, edges=edges).matrices(4, W)
        assert len(first) == 3 and all(np.array_equal(a, b) for a, b in zip(first, again))
        for Wt in first:
            np.testing.assert_allclose(Wt.sum(axis=1), 1, atol=1e-6)
    assert GossipSchedule("static", 2).matrices(1, W) == [W, W]


@pytest.mark.e2e
def test_every_algorithm_in_a_real_flower_run_with_its_bytes_rederivable(tmp_path) -> None:
    """Three algorithms, one time-varying schedule with two gossip steps, one Flower simulation (a sweep)."""
    import csv
    import json

    from flower_dl.strategies.base import GossipSchedule
    from flower_dl.topology.schedules import models_sent

    from .conftest import TWO_ROUNDS, run_cli

    table, runs = tmp_path / "table.csv", tmp_path / "runs"
    grid = "strategy=['decentralized', 'gradient-tracking', 'choco']"
    fixed = f"{TWO_ROUNDS} mixing-schedule='random-matching' gossip-steps=2"
    proc = run_cli("sweep", "-g", grid, "-c", fixed, "-t", str(table), "--runs-dir", str(runs))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    model_bytes = (784 * 200 + 200 + 200 * 10 + 10) * 4  # the MLP's float32 parameters
    per_strategy = {}
    for folder in (p for p in runs.iterdir() if p.is_dir()):  # beside the cells: events.jsonl
        config = json.loads((folder / "config.json").read_text())
        rc = config["run-config"]
        with open(folder / "metrics.csv") as f:
            rows = list(csv.DictReader(f))
        assert all(r["failed"] == "0" and 0 < float(r["accuracy"]) <= 1 for r in rows)
        sent = {(int(r["round"]), int(r["node"])): int(r["gossip-bytes"]) for r in rows}
        per_strategy[rc["strategy"]] = sent
        total = json.loads((folder / "summary.json").read_text())["gossip-bytes-total"]
        assert total == sum(sent.values()) > 0
        if rc["strategy"] == "decentralized":
            # the round's matchings, re-derived from config.json alone
            schedule = GossipSchedule(
                rc["mixing-schedule"], rc["gossip-steps"], rc["seed"], rc["epidemic-peers"],
                tuple(tuple(e) for e in config["edges"]),
            )  # fmt: skip
            W = np.array(config["mixing-matrix"])
            for r in (1, 2):
                expected = sum(models_sent(Wt) for Wt in schedule.matrices(r, W)) * model_bytes
                assert [sent[(r, n)] for n in range(5)] == expected.tolist()
    assert set(per_strategy) == {"decentralized", "gradient-tracking", "choco"}
    # same seed, same matchings: K-GT sends a model and a tracker where D-PSGD sends a model
    assert {k: 2 * v for k, v in per_strategy["decentralized"].items()} == per_strategy["gradient-tracking"]
    # choco: top-k 10 %, an index and a value per kept coordinate
    kept = compressed.kept_coordinates(model_bytes // 4, 0.1)
    assert {k: v // model_bytes * kept * 8 for k, v in per_strategy["decentralized"].items()} == per_strategy["choco"]
