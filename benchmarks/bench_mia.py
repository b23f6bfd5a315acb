"""What the membership attack adds to a node's round, measured in one process.

For each node of the default config (embedded data, the study's tree, k = 3,
MLP, 3 local epochs) it times, on one torch thread as a simulation worker
runs: the node's local training of one round, its evaluation on the test set,
and the loss-threshold attack at ``mia-samples`` (per-sample losses of the
members and non-members, then the exact AUC and the TPR at 1% FPR). It prints
the attack's time as a fraction of the round (training + evaluation).

    python benchmarks/bench_mia.py [--mia-samples 200] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from flower_dl import membership, training
from flower_dl.config import RunConfig
from flower_dl.data import load_dataset, partition_indices, to_tensor
from flower_dl.models import build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mia-samples", type=int, default=RunConfig().mia_samples)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = RunConfig(mia_samples=args.mia_samples)
    data = load_dataset(cfg.dataset)
    parts = partition_indices(data.train_labels, cfg.partitioner, cfg.num_nodes, digits_per_node=cfg.digits_per_node)
    test_x, test_y = to_tensor(data.test_images), torch.from_numpy(data.test_labels.astype(np.int64))
    fractions = []
    for node, ids in enumerate(parts):
        x, y = to_tensor(data.train_images[ids]), torch.from_numpy(data.train_labels[ids].astype(np.int64))
        members, nonmembers = membership.attack_samples(
            ids, data.train_labels[ids], data.test_labels, cfg.mia_samples, cfg.seed, node=node
        )
        mx = to_tensor(data.train_images[members])
        my = torch.from_numpy(data.train_labels[members].astype(np.int64))
        model = build_model(cfg.model, seed=cfg.seed)
        rounds, attacks = [], []
        for _ in range(args.repeats):
            started = time.perf_counter()
            training.train(model, x, y, epochs=cfg.local_epochs, lr=cfg.lr, momentum=cfg.momentum,
                           batch_size=cfg.batch_size, generator=torch.Generator().manual_seed(node))  # fmt: skip
            training.evaluate(model, test_x, test_y)
            rounds.append(time.perf_counter() - started)
            started = time.perf_counter()
            member_losses = training.sample_losses(model, mx, my)
            nonmember_losses = training.sample_losses(model, test_x[nonmembers], test_y[nonmembers])
            auc = membership.attack_auc(member_losses, nonmember_losses)
            membership.tpr_at_fpr(member_losses, nonmember_losses, 0.01)
            attacks.append(time.perf_counter() - started)
        fraction = np.median(attacks) / np.median(rounds)
        fractions.append(fraction)
        print(f"node {node}: round {np.median(rounds):.3f} s, attack {np.median(attacks) * 1e3:.1f} ms "
              f"({100 * fraction:.2f}% of the round), last AUC {auc:.3f}")  # fmt: skip
    print(f"attack / round, worst node: {100 * max(fractions):.2f}% (target: under 10%)")


if __name__ == "__main__":
    main()
