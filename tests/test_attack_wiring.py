"""The attacks and DP-SGD wired into a run: which rounds are attacked, the columns and summary they fill, the
epsilon each node reports, and the DP refusals that come before any training.

In process (the real handlers through :class:`tests.conftest.FakeGrid`), so the rounds and values are checked
on a run small enough for the quick loop.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from opacus.accountants import RDPAccountant

from flower_dl.config import RunConfig
from flower_dl.server.app import run_experiment

from .conftest import FakeGrid

ROUNDS = 3


def _rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def dp_run(tmp_path_factory) -> tuple[RunConfig, Path]:
    """Three nodes on a ring, three rounds, every second round attacked (so rounds 2 and 3), DP-SGD at sigma 1."""
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 7, 1, 1
    out = tmp_path_factory.mktemp("wiring")
    cfg = RunConfig(
        num_nodes=3, topology="ring", num_server_rounds=ROUNDS, local_epochs=1, share_ratio=0.2, mia_samples=40,
        mia_every=2, mia_reference_models=1, dp_noise_multiplier=1.0, dp_clip=1.0, results_dir=str(out),
        run_name="wiring",
    )  # fmt: skip
    return cfg, run_experiment(FakeGrid(cfg), cfg)


def test_the_sent_model_is_attacked_at_the_rounds_mia_every_names_and_the_final_one_by_rmia(dp_run) -> None:
    _, folder = dp_run
    rows = _rows(folder)
    assert {int(r["node"]) for r in rows} == {0, 1, 2}
    for row in rows:
        rnd = int(row["round"])
        attacked = rnd in (2, 3)
        for col in ("sent-mia-auc", "sent-mia-tpr-1fpr", "sent-mia-tpr-0.1fpr", "sent-rmia-auc", "sent-rmia-tpr-1fpr"):
            assert (row[col] != "") == attacked, (rnd, col, row[col])
        # the loss attack on the evaluated model every round, RMIA on the final model only
        assert row["mia-auc"] != ""
        assert (row["rmia-auc"] != "") == (rnd == ROUNDS), (rnd, row["rmia-auc"])
        for col in ("sent-mia-auc", "sent-rmia-auc", "rmia-auc", "mia-auc"):
            if row[col]:
                assert 0.0 <= float(row[col]) <= 1.0, (col, row[col])


def test_each_node_reports_the_epsilon_of_its_training_so_far_from_the_rdp_accountant(dp_run) -> None:
    """Recomputed here step by step with Opacus's accountant: q = 1 / ceil(n / B), ceil(n / B) steps an epoch."""
    cfg, folder = dp_run
    for row in _rows(folder):
        n, rnd = int(row["num-train-examples"]), int(row["round"])
        steps_per_epoch = math.ceil(n / cfg.batch_size)
        accountant = RDPAccountant()
        for _ in range(rnd * cfg.local_epochs * steps_per_epoch):
            accountant.step(noise_multiplier=cfg.dp_noise_multiplier, sample_rate=1 / steps_per_epoch)
        want = accountant.get_epsilon(cfg.dp_delta)
        assert float(row["dp-epsilon"]) == pytest.approx(want, rel=1e-9), row
    eps = {int(r["round"]): float(r["dp-epsilon"]) for r in _rows(folder) if r["node"] == "0"}
    assert eps[1] < eps[2] < eps[3]  # composition over rounds


def test_the_summary_puts_both_channels_on_one_scale(dp_run) -> None:
    _, folder = dp_run
    summary = json.loads((folder / "summary.json").read_text())
    rows = _rows(folder)
    last = {r["node"]: r for r in rows if int(r["round"]) == ROUNDS}
    exposed = summary["identified-exchange"]
    model = summary["identified-model"]
    assert summary["identified-model-attack"] == "rmia-tpr-1fpr"
    assert set(exposed) == set(model) == set(last)
    for node, row in last.items():
        assert exposed[node] == pytest.approx(float(row["exposed-fraction"]))
        assert model[node] == pytest.approx(float(row["sent-rmia-tpr-1fpr"]))
        assert summary["dp-epsilon"][node] == pytest.approx(float(row["dp-epsilon"]))
    # at least the share-ratio's 0.2 of its own samples (more where a neighbour sent a sample both nodes hold)
    assert all(0.2 - 0.01 <= v < 0.5 for v in exposed.values()), exposed


@pytest.mark.usefixtures("task_identity")
def test_dp_with_a_batchnorm_model_is_refused_before_training(tmp_path: Path, batchnorm_model: str) -> None:
    cfg = RunConfig(
        model=batchnorm_model, num_server_rounds=1, dp_noise_multiplier=1.0, results_dir=str(tmp_path / "out")
    )
    with pytest.raises(RuntimeError, match=r"dp-noise-multiplier: model Sequential cannot be trained with DP-SGD.*"
                       r"BatchNorm1d.*allowed: .*GroupNorm"):  # fmt: skip
        run_experiment(FakeGrid(cfg), cfg)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # nothing trained, no folder
    # the same model without DP trains (the refusal is DP's, not the model's)
    ok = RunConfig(model=batchnorm_model, num_server_rounds=1, local_epochs=1, mia_samples=0,
                   results_dir=str(tmp_path / "ok"))  # fmt: skip
    assert json.loads((run_experiment(FakeGrid(ok), ok) / "summary.json").read_text())["accuracy-mean"] is not None


@pytest.mark.usefixtures("task_identity")
def test_reference_models_go_on_from_the_nodes_state_in_a_fresh_process_as_if_trained_there() -> None:
    """Round 2's reference model, kept in the node's state, continued to round 3 after the process cache is gone,
    equals the one trained to round 3 in one go: the final evaluation need not train it again."""
    import torch

    from flower_dl.node.state import CACHE, Node
    from flower_dl.privacy import audit

    cfg = RunConfig(num_nodes=3, topology="ring", local_epochs=1, mia_samples=40, mia_reference_models=1)
    grid = FakeGrid(cfg)
    context = grid.contexts[1000]
    CACHE.clear()
    audit.reference_models(Node(context, cfg, 0), 2)
    assert Node(context, cfg, 0).stored_reference(0)[0] == 2
    CACHE.clear()  # another process: only the node's state is left
    continued = audit.reference_models(Node(context, cfg, 0), 3)[0]
    assert Node(context, cfg, 0).stored_reference(0)[0] == 3
    CACHE.clear()
    fresh_context = FakeGrid(cfg).contexts[1000]
    in_one_go = audit.reference_models(Node(fresh_context, cfg, 0), 3)[0]
    for (key, a), b in zip(continued.state_dict().items(), in_one_go.state_dict().values()):
        assert torch.equal(a, b), key
