"""Local training and evaluation loops on preloaded tensors (no DataLoader).

Convolutional models run with channels-last weights (``torch.channels_last``):
on CPU, oneDNN's channels-last kernels train the study's CNN about twice as
fast on one thread as the default layout (``benchmarks/bench_round_time.py``
measures it). Only the memory layout changes, not the arithmetic being done;
the model is handed back in the default layout.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from flower_dl.privacy import dp as dp_lib
from flower_dl.privacy import per_sample
from flower_dl.privacy.dp import DPSGD


class MomentumSGD:
    """``torch.optim.SGD(params, lr, momentum)``, operation for operation.

    The same update as PyTorch's single-tensor SGD without dampening, Nesterov
    or weight decay: ``b <- momentum * b + g`` (``b = g`` on the first step),
    ``w <- w - lr * b``. It exists for start-up time: the first
    ``torch.optim`` optimizer a process creates imports ``torch._dynamo``
    (seconds of CPU), and a SuperNode runs every ``train`` message in a
    fresh process. ``tests/test_training.py`` checks it gives bit-identical
    weights to ``torch.optim.SGD``.
    """

    def __init__(self, params, lr: float, momentum: float = 0.0) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.lr = lr
        self.momentum = momentum
        self.buffers: list[torch.Tensor | None] = [None] * len(self.params)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            grad = p.grad
            if self.momentum != 0:
                buf = self.buffers[i]
                if buf is None:
                    buf = self.buffers[i] = torch.clone(grad).detach()
                else:
                    buf.mul_(self.momentum).add_(grad)
                grad = buf
            p.add_(grad, alpha=-self.lr)


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
    correction: Mapping[str, torch.Tensor] | None = None,
    dp: DPSGD | None = None,
) -> float:
    """Train ``model`` in place with SGD; return the mean loss of the last epoch.

    Each epoch visits the samples in a fresh random order (drawn from
    ``generator``) in mini-batches sliced from the preloaded tensors. With
    ``proximal_mu > 0`` the FedProx term ``mu/2 * ||w - w0||^2`` is added,
    ``w0`` being the weights the round started from. With a ``correction``
    (parameter name -> tensor; gradient tracking's ``c_i``), every step also
    moves each parameter by ``-lr * c``, outside the momentum buffer, as the
    K-GT reference implementation applies its control variable: the
    correction is a constant of the round, not a gradient to accelerate.

    With ``dp`` (:class:`flower_dl.privacy.dp.DPSGD`) every step is a DP-SGD step
    instead (:func:`_train_private`); without, the loop is the plain one,
    untouched by DP's code (Opacus is not even imported).
    """
    n = len(labels)
    if n == 0:
        return float("nan")
    if dp is not None:
        return _train_private(
            model,
            images,
            labels,
            epochs=epochs,
            lr=lr,
            momentum=momentum,
            batch_size=batch_size,
            generator=generator,
            proximal_mu=proximal_mu,
            correction=correction,
            dp=dp,
        )
    with fast_layout(model):
        device = next(model.parameters()).device
        optimizer = MomentumSGD(model.parameters(), lr=lr, momentum=momentum)
        anchor = [p.detach().clone() for p in model.parameters()] if proximal_mu > 0 else None
        shifts = _shifts(model, correction, lr)
        model.train()
        last_loss = float("nan")
        for _ in range(epochs):
            order = torch.randperm(n, generator=generator).to(device)
            total, count = 0.0, 0
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                # index_select: the same rows as images[idx], without advanced indexing's overhead
                x, y = images.index_select(0, idx), labels.index_select(0, idx)
                optimizer.zero_grad()
                loss = F.cross_entropy(model(x), y)
                if anchor is not None:
                    prox = sum(((p - a) ** 2).sum() for p, a in zip(model.parameters(), anchor))
                    loss = loss + 0.5 * proximal_mu * prox
                loss.backward()
                optimizer.step()
                if shifts:
                    with torch.no_grad():
                        for p, shift in shifts:
                            p.sub_(shift)
                total += loss.item() * len(idx)
                count += len(idx)
            last_loss = total / count
    return last_loss


def private_batches(
    n: int, batch_size: int, dp: DPSGD, generator: torch.Generator | None, device: torch.device
) -> Iterator[torch.Tensor]:
    """One epoch's batches (index tensors on ``device``) for DP-SGD.

    Poisson: ``ceil(n / batch_size)`` batches, each sample in each
    independently with probability ``q`` (Opacus's
    ``UniformWithReplacementSampler``: ``rand(n) < q``; a batch may be
    empty). Otherwise the plain loop's batches, from the same draws of
    ``generator``.
    """
    if dp.poisson:
        rate = dp_lib.sample_rate(n, batch_size)
        for _ in range(dp_lib.steps_per_epoch(n, batch_size)):
            mask = torch.rand(n, generator=generator) < rate
            yield mask.nonzero().reshape(-1).to(device)
        return
    order = torch.randperm(n, generator=generator).to(device)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def _noise_generator(dp: DPSGD, generator: torch.Generator | None, device: torch.device) -> torch.Generator | None:
    """The noise's own generator on ``device``, seeded from ``generator`` (the global RNG without one).

    A seed is drawn only when there is noise to draw, so that DP-SGD without
    noise takes the very same draws (batches, dropout) as the plain loop.
    """
    if dp.noise_multiplier == 0:
        return None
    seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
    return torch.Generator(device=device).manual_seed(seed)


def _train_private(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    epochs: int,
    lr: float,
    momentum: float,
    batch_size: int,
    generator: torch.Generator | None,
    proximal_mu: float,
    correction: Mapping[str, torch.Tensor] | None,
    dp: DPSGD,
) -> float:
    """:func:`train` with DP-SGD steps (Opacus's ``DPOptimizer`` arithmetic, :mod:`flower_dl.privacy.dp`).

    Each step: a batch per ``dp.poisson``; one backward pass of the summed
    per-sample cross-entropy over the normaliser (the expected batch size
    ``q * n`` for Poisson batches, the actual size otherwise) with Opacus's
    per-sample hooks; clipping and noise (:func:`flower_dl.privacy.dp.privatize`).
    The FedProx gradient ``mu (w - w0)`` is added after privatisation: it
    does not depend on the data, so it needs no clipping, and clipping it
    with the data would weaken the pull towards ``w0``. Then the momentum
    step and the correction's shift, as in the plain loop. Returns the mean
    per-sample loss of the last epoch's sampled batches (with the FedProx
    term, as the plain loop reports it).
    """
    n = len(labels)
    with fast_layout(model), per_sample.per_sample_gradients(model):
        device = next(model.parameters()).device
        optimizer = MomentumSGD(model.parameters(), lr=lr, momentum=momentum)
        anchor = [p.detach().clone() for p in optimizer.params] if proximal_mu > 0 else None
        shifts = _shifts(model, correction, lr)
        noise = _noise_generator(dp, generator, device)
        model.train()
        last_loss = float("nan")
        for _ in range(epochs):
            total, count = 0.0, 0
            for idx in private_batches(n, batch_size, dp, generator, device):
                x, y = images.index_select(0, idx), labels.index_select(0, idx)
                normaliser = dp_lib.expected_batch_size(n, batch_size) if dp.poisson else float(len(idx))
                total += dp_lib.private_backward(model, x, y, dp, normaliser, noise)
                count += len(idx)
                if anchor is not None:
                    with torch.no_grad():
                        prox = 0.0
                        for p, a in zip(optimizer.params, anchor):
                            p.grad.add_(p - a, alpha=proximal_mu)
                            prox += float(((p - a) ** 2).sum())
                    total += 0.5 * proximal_mu * prox * len(idx)
                optimizer.step()
                if shifts:
                    with torch.no_grad():
                        for p, shift in shifts:
                            p.sub_(shift)
            last_loss = total / count if count else float("nan")
    return last_loss


def num_steps(num_examples: int, epochs: int, batch_size: int) -> int:
    """The SGD steps :func:`train` takes: ``epochs`` times the mini-batches of an epoch."""
    return epochs * -(-num_examples // batch_size)


def _shifts(
    model: nn.Module, correction: Mapping[str, torch.Tensor] | None, lr: float
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(parameter, lr * c)`` pairs of a correction (in the parameter's layout); empty without one.

    The server tracks every floating array of the state dict, float buffers
    (BatchNorm's running statistics) included, since it cannot tell them from
    parameters; SGD does not move a buffer, so a buffer's entry is skipped.
    """
    if correction is None:
        return []
    params = dict(model.named_parameters())
    buffers = {name for name, _ in model.named_buffers()}
    unknown = sorted(set(correction) - set(params) - buffers)
    if unknown:
        raise ValueError(f"correction: {unknown[0]!r} is not a parameter of the model; allowed: {sorted(params)}")
    return [
        (params[name], lr * c.to(params[name].dtype).reshape(params[name].shape))
        for name, c in correction.items()
        if name in params
    ]


@torch.no_grad()
def sample_losses(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1024) -> np.ndarray:
    """Per-sample cross-entropy losses of ``model`` (eval mode), in float64: what the membership attacks score.

    The softmax is taken in float64: an overfit model gives its members
    probabilities so close to 1 that float32 rounds many of them to exactly 1
    (loss 0), and the attacks need their order.
    """
    model.eval()
    out = []
    with fast_layout(model):
        for start in range(0, len(labels), batch_size):
            x, y = images[start : start + batch_size], labels[start : start + batch_size]
            out.append(F.cross_entropy(model(x).double(), y, reduction="none").cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float64)


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
