"""Local training and evaluation loops on preloaded tensors (no DataLoader).

Convolutional models run with channels-last weights (``torch.channels_last``):
on CPU, oneDNN's channels-last kernels train the study's CNN about twice as
fast on one thread as the default layout (``benchmarks/bench_round_time.py``
measures it). Only the memory layout changes, not the arithmetic being done;
the model is handed back in the default layout.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn import functional as F


@contextmanager
def fast_layout(model: nn.Module) -> Iterator[nn.Module]:
    """Inside the block, a model with 4-d (convolution) weights is channels-last."""
    conv = any(p.dim() == 4 for p in model.parameters())
    if conv:
        model.to(memory_format=torch.channels_last)
    try:
        yield model
    finally:
        if conv:
            model.to(memory_format=torch.contiguous_format)


def train(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    epochs: int,
    lr: float,
    momentum: float,
    batch_size: int,
    generator: torch.Generator | None = None,
    proximal_mu: float = 0.0,
) -> float:
    """Train ``model`` in place with SGD; return the mean loss of the last epoch.

    Each epoch visits the samples in a fresh random order (drawn from
    ``generator``) in mini-batches sliced from the preloaded tensors. With
    ``proximal_mu > 0`` the FedProx term ``mu/2 * ||w - w0||^2`` is added,
    ``w0`` being the weights the round started from.
    """
    n = len(labels)
    if n == 0:
        return float("nan")
    with fast_layout(model):
        device = next(model.parameters()).device
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
        anchor = [p.detach().clone() for p in model.parameters()] if proximal_mu > 0 else None
        model.train()
        last_loss = float("nan")
        for _ in range(epochs):
            order = torch.randperm(n, generator=generator).to(device)
            total, count = 0.0, 0
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                x, y = images[idx], labels[idx]
                optimizer.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(x), y)
                if anchor is not None:
                    prox = sum(((p - a) ** 2).sum() for p, a in zip(model.parameters(), anchor))
                    loss = loss + 0.5 * proximal_mu * prox
                loss.backward()
                optimizer.step()
                total += loss.item() * len(idx)
                count += len(idx)
            last_loss = total / count
    return last_loss


@torch.no_grad()
def evaluate(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1024
) -> tuple[float, float]:
    """Return ``(loss, accuracy)`` of ``model`` on the given tensors."""
    model.eval()
    n = len(labels)
    loss_sum, correct = 0.0, 0
    with fast_layout(model):
        for start in range(0, n, batch_size):
            x, y = images[start : start + batch_size], labels[start : start + batch_size]
            out = model(x)
            loss_sum += F.cross_entropy(out, y, reduction="sum").item()
            correct += (out.argmax(1) == y).sum().item()
    return loss_sum / max(n, 1), correct / max(n, 1)
