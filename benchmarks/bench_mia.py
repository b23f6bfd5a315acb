"""What the membership attacks cost per attacked round, measured in one process with the nodes' own code.

For each node of the default config (embedded data, the study's tree, k = 3,
MLP, 3 local epochs, 10 rounds), on one torch thread as a simulation worker
runs, it times:

* ``round``: one round's local training and its evaluation on the test set;
* ``loss``: the loss-threshold attack on the trained model (``mia-samples``
  members and non-members);
* ``rmia-last``: RMIA on the last round's model with ``mia-reference-models``
  reference models trained from scratch for 10 x ``local-epochs`` epochs (what
  the default run pays, once per node, in the last round; and what a
  SuperNode pays at each attacked round, its processes being fresh);
* ``rmia-next``: RMIA one round later in the same process (the reference
  models go on for one more round of epochs: the cost of ``mia-every = 1``
  per round in a simulation worker).

It prints each as seconds and as a fraction of a round (the default run's
extra time is about ``(loss + rmia-last) / (10 x round)`` per node).

    python benchmarks/bench_mia.py [--mia-samples 200] [--mia-reference-models 2] [--model mlp]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from flwr.app import Context, RecordDict

from flower_dl.config import RunConfig
from flower_dl.node import training
from flower_dl.node.models import build_model
from flower_dl.node.state import CACHE, Node
from flower_dl.privacy import audit


def node_of(cfg: RunConfig, pid: int) -> Node:
    """Node ``pid`` as a handler sees it, without an exchange (its own samples are its training set)."""
    context = Context(
        run_id=1, node_id=pid, node_config={"partition-id": pid, "num-partitions": cfg.num_nodes}, state=RecordDict(),
        run_config=cfg.to_run_config(),
    )  # fmt: skip
    return Node(context, cfg, pid)


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def time_node(cfg: RunConfig, pid: int) -> tuple[int, float, float, float, float]:
    """Node ``pid``'s training-set size and the seconds of a round, the loss attack, RMIA last and next round."""
    CACHE.clear()
    node = node_of(cfg, pid)
    node.check_data()
    x, y, test_x, test_y = node.tensors()
    spec = node.spec()
    model = build_model(cfg.model, spec.input_shape, spec.num_classes, seed=cfg.seed)

    def one_round() -> None:
        training.train(model, x, y, epochs=cfg.local_epochs, lr=cfg.lr, momentum=cfg.momentum,
                       batch_size=cfg.batch_size, generator=torch.Generator().manual_seed(pid))  # fmt: skip
        training.evaluate(model, test_x, test_y)

    rounds = cfg.num_server_rounds
    round_s = float(np.median([timed(one_round) for _ in range(3)]))
    loss_s = float(np.median([timed(lambda: audit.attack_metrics(node, model)) for _ in range(3)]))
    last_s = timed(lambda: audit.attack_metrics(node, model, chunks=rounds))
    next_s = timed(lambda: audit.attack_metrics(node, model, chunks=rounds + 1))
    return len(y), round_s, loss_s, last_s, next_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mia-samples", type=int, default=RunConfig().mia_samples)
    parser.add_argument("--mia-reference-models", type=int, default=RunConfig().mia_reference_models)
    parser.add_argument("--model", default=RunConfig().model)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = RunConfig(mia_samples=args.mia_samples, mia_reference_models=args.mia_reference_models, model=args.model)
    rounds = cfg.num_server_rounds
    print(f"model {cfg.model}, mia-samples {cfg.mia_samples}, mia-reference-models {cfg.mia_reference_models}, "
          f"{rounds} rounds of {cfg.local_epochs} local epochs, one torch thread")  # fmt: skip
    print(f"{'node':>4} {'train':>6} {'round s':>8} {'loss s':>7} {'rmia-last s':>11} {'rmia-next s':>11} "
          f"{'(loss+rmia-last)/run':>21}")  # fmt: skip
    shares = []
    for pid in range(cfg.num_nodes):
        n_train, round_s, loss_s, last_s, next_s = time_node(cfg, pid)
        share = (loss_s + last_s) / (rounds * round_s)
        shares.append(share)
        print(f"{pid:>4} {n_train:>6} {round_s:>8.3f} {loss_s:>7.3f} {last_s:>11.3f} {next_s:>11.3f} {share:>21.1%}")
    print(f"mean extra per node over a {rounds}-round run: {np.mean(shares):.1%} of its training and evaluation")


if __name__ == "__main__":
    main()
