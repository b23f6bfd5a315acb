"""Central DP for the parameter-server baselines: Flower's server-side fixed-clipping wrapper, the node-level
epsilon it spends (checked against the exact privacy curve of the Gaussian mechanism), the mean it noises
(every node weighted alike) and the refusals that come before any training.

In process (the real handlers through :class:`tests.conftest.FakeGrid`).
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from flwr.app import ArrayRecord
from scipy import optimize, stats

from flower_dl import protocol
from flower_dl.config import RunConfig
from flower_dl.privacy import central_dp
from flower_dl.server import rounds
from flower_dl.server.app import run_experiment
from flower_dl.strategies import build_strategy
from flower_dl.strategies.server import CentralDP

from .conftest import FakeGrid


def exact_gaussian_epsilon(mu: float, delta: float) -> float:
    """The tight epsilon of a Gaussian mechanism of sensitivity 1 and noise ``1 / mu`` (Balle & Wang, ICML 2018):
    the root of ``delta(eps) = Phi(-eps/mu + mu/2) - exp(eps) Phi(-eps/mu - mu/2)``."""

    def gap(eps: float) -> float:
        return stats.norm.cdf(-eps / mu + mu / 2) - math.exp(eps) * stats.norm.cdf(-eps / mu - mu / 2) - delta

    return optimize.brentq(gap, 0.0, 100.0)


@pytest.mark.parametrize(("sigma", "rounds_", "delta"), [(1.0, 10, 1e-5), (2.0, 10, 1e-5), (4.0, 50, 1e-6)])
def test_the_epsilon_is_rdp_s_bound_on_the_exact_curve_of_the_composed_gaussian_mechanism(sigma, rounds_, delta):
    """``rounds`` Gaussian releases of noise ``sigma`` compose to one with ``mu = sqrt(rounds) / sigma``: the
    accountant's epsilon may not be below the exact one, and RDP is known to be loose by a few tens of percent."""
    exact = exact_gaussian_epsilon(math.sqrt(rounds_) / sigma, delta)
    got = central_dp.central_epsilon(sigma, rounds_, delta)
    assert exact <= got <= 1.3 * exact, (exact, got)


def test_the_epsilon_by_hand_from_the_gaussian_mechanism_s_renyi_divergence() -> None:
    """RDP of order a of T Gaussian releases: T a / (2 sigma^2); converted with Balle et al. (2020)'s bound, the
    one Opacus uses, minimised over Opacus's orders."""
    sigma, T, delta = 1.5, 20, 1e-5
    orders = np.array([1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)), dtype=float)
    rdp = T * orders / (2 * sigma**2)
    eps = rdp - (np.log(delta) + np.log(orders)) / (orders - 1) + np.log((orders - 1) / orders)
    assert central_dp.central_epsilon(sigma, T, delta) == pytest.approx(float(eps.min()), rel=1e-9)
    assert central_dp.central_epsilon(0.0, T, delta) == math.inf


class RecordingGrid(FakeGrid):
    """A FakeGrid that keeps each round's ``train`` messages and replies (their arrays, copied on arrival)."""

    def __init__(self, cfg: RunConfig) -> None:
        super().__init__(cfg)
        self.train: list[tuple[dict[str, np.ndarray], list[tuple[dict[str, np.ndarray], int]]]] = []

    def send_and_receive(self, messages, timeout=None):
        messages = list(messages)
        replies = super().send_and_receive(messages, timeout)
        if messages and messages[0].metadata.message_type == "train":
            sent = {k: a.numpy().copy() for k, a in messages[0].content.array_records["arrays"].items()}
            got = [
                (
                    {k: a.numpy().copy() for k, a in protocol.reply_arrays(r).items()},
                    int(r.content[protocol.METRICS][protocol.NUM_EXAMPLES]),
                )
                for r in replies
            ]
            self.train.append((sent, got))
        return replies


def _cfg(tmp_path: Path, **kw) -> RunConfig:
    base = dict(num_nodes=3, topology="ring", strategy="fedavg", num_server_rounds=2, local_epochs=1,
                share_ratio=0.0, mia_samples=0, digits_per_node=2, results_dir=str(tmp_path), run_name="cdp")  # fmt: skip
    return RunConfig(**{**base, **kw})


@pytest.mark.usefixtures("task_identity")
def test_each_node_reports_the_epsilon_spent_so_far_and_the_summary_the_last(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, central_dp_noise_multiplier=1.0, central_dp_clip=1.0)
    folder = run_experiment(FakeGrid(cfg), cfg)
    with open(folder / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        want = central_dp.central_epsilon(1.0, int(row["round"]), cfg.dp_delta)
        assert float(row["central-dp-epsilon"]) == pytest.approx(want), row
        assert row["dp-epsilon"] == ""  # DP-SGD is off: the node-side column stays empty
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["central-dp-epsilon"] == {
        str(n): pytest.approx(central_dp.central_epsilon(1.0, 2, 1e-5)) for n in range(3)
    }


@pytest.mark.usefixtures("task_identity")
def test_the_noised_model_is_the_unweighted_mean_of_the_clipped_updates(tmp_path: Path) -> None:
    """Noise 1e-12 and a clip no update reaches: the next model is the plain mean of the nodes' models (Flower's
    FedAvg would weight by sample count, which the nodes here do not share), to float32 precision."""
    cfg = _cfg(tmp_path, central_dp_noise_multiplier=1e-12, central_dp_clip=1e3, partitioner="dirichlet")
    grid = RecordingGrid(cfg)
    run_experiment(grid, cfg)
    (_, replies), (next_model, _) = grid.train[0], grid.train[1]
    counts = [n for _, n in replies]
    assert len(set(counts)) > 1, counts  # the two means differ
    for key, value in next_model.items():
        stacked = np.stack([arrays[key] for arrays, _ in replies]).astype(np.float64)
        np.testing.assert_allclose(value, stacked.mean(axis=0), atol=1e-6, err_msg=key)
        weighted = np.tensordot(np.array(counts, float) / sum(counts), stacked, axes=1)
        assert not np.allclose(value, weighted, atol=1e-6), key


@pytest.mark.usefixtures("task_identity")
def test_a_clip_below_the_update_norm_bounds_each_node_s_step(tmp_path: Path) -> None:
    """With clip 1e-3 the model can move by at most clip (the mean of updates of norm <= clip) plus the noise."""
    clip = 1e-3
    cfg = _cfg(tmp_path, central_dp_noise_multiplier=1e-12, central_dp_clip=clip)
    grid = RecordingGrid(cfg)
    run_experiment(grid, cfg)
    (before, replies), (after, _) = grid.train[0], grid.train[1]
    update_norms = [math.sqrt(sum(float(np.sum((a[k] - before[k]) ** 2)) for k in before)) for a, _ in replies]
    assert min(update_norms) > 10 * clip  # the clip bites
    step = math.sqrt(sum(float(np.sum((after[k] - before[k]) ** 2)) for k in before))
    assert step <= clip * (1 + 1e-4), step


@pytest.mark.usefixtures("task_identity")
def test_a_model_with_integer_buffers_is_refused_before_training(tmp_path: Path, batchnorm_model: str) -> None:
    cfg = _cfg(tmp_path / "out", model=batchnorm_model, central_dp_noise_multiplier=1.0)
    with pytest.raises(ValueError, match=r"central-dp-noise-multiplier: .*num_batches_tracked.*allowed: .*GroupNorm"):
        run_experiment(FakeGrid(cfg), cfg)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_the_strategies_central_dp_serves_are_those_aggregating_by_fedavg_s_mean() -> None:
    """``central_dp.CENTRAL_STRATEGIES`` is written out (the run config validates without importing Flower): it must
    name exactly the registered parameter-server strategies whose aggregation is Flower's FedAvg's own."""
    import flwr.serverapp.strategy as fl

    from flower_dl import registry

    serving = {
        name
        for name in registry.strategies_of_kind("parameter-server")
        if registry.STRATEGIES.load(name).aggregate_train is fl.FedAvg.aggregate_train
    }
    assert serving == set(central_dp.CENTRAL_STRATEGIES)


def test_the_wrapper_hands_the_server_what_it_reads_and_checkpoints_the_wrapped_strategy(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, central_dp_noise_multiplier=1.0)
    node_ids = {0: 1000, 1: 1001, 2: 1002}
    W = np.full((3, 3), 1 / 3)
    strategy = build_strategy(cfg, W, node_ids)
    assert isinstance(strategy, CentralDP) and strategy.strategy.uniform_weights
    assert strategy.node_ids == node_ids and strategy.history is strategy.strategy.history
    strategy.history.record(1, 0, {"accuracy": 0.5})
    buf = io.BytesIO()
    rounds.write_checkpoint(buf, strategy, 1, ArrayRecord(), cfg.cell_id)
    fresh = build_strategy(cfg, W, {0: 2000, 1: 2001, 2: 2002})  # a new Flower run: other node ids
    buf.seek(0)
    assert rounds.restore(fresh, buf, cfg.cell_id)[0] == 1
    assert fresh.history.columns[(1, 0)] == {"accuracy": 0.5}
    assert fresh.node_ids == {0: 2000, 1: 2001, 2: 2002}  # run-bound: kept from the new strategy
    assert fresh.strategy is not strategy.strategy and isinstance(fresh, CentralDP)
