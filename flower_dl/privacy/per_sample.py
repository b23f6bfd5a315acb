"""Per-sample gradients for DP-SGD: which models have them, and the two engines that compute them.

DP-SGD (:mod:`flower_dl.privacy.dp`) clips every sample's gradient, so it needs
each sample's gradient, not only the batch's. A model whose per-sample
gradients are undefined (BatchNorm mixes the samples of a batch) or that
Opacus cannot serve is refused before any training (:func:`check_model`,
:func:`model_problems`). Inside :func:`per_sample_gradients` a backward pass
also leaves each parameter's per-sample terms: for a model of ``nn.Linear``
layers only as the two factors of each weight's gradient
(:class:`LinearSamples`, "ghost clipping"), for any other by Opacus's
``GradSampleModule`` hooks.

Like :mod:`flower_dl.privacy.dp`, this module imports neither Opacus nor torch
at module level, so that a run without DP never pays for them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn


# ------------------------------------------------------------------ the engines
@dataclass(frozen=True)
class LinearSamples:
    """The per-sample gradients of a ``Linear`` weight, kept as their two factors: sample i's is ``g_i a_i^T``.

    ``g`` (``(batch, out)``) holds the gradients of the layer's outputs and
    ``a`` (``(batch, in)``) its inputs. A sample's norm is ``||g_i|| ||a_i||``
    and the clipped sum is one matrix product ``(f * g)^T a``, so the
    ``batch x out x in`` tensor Opacus writes (and zero-fills) each step is
    never built: the "ghost clipping" of Goodfellow (2015) and Li et al.
    (ICLR 2022), exact for a layer applied once to 2-D inputs.
    """

    g: torch.Tensor
    a: torch.Tensor


def linear_only(model: nn.Module) -> bool:
    """Whether every module that owns a trainable parameter is a plain ``nn.Linear`` (the MLP): the fast path."""
    from torch import nn

    owners = [m for m in model.modules() if any(p.requires_grad for p in m.parameters(recurse=False))]
    return bool(owners) and all(type(m) is nn.Linear for m in owners)


@contextmanager
def per_sample_gradients(model: nn.Module, engine: str = "auto") -> Iterator[None]:
    """Inside the block, a backward pass also leaves each trainable parameter's per-sample ``p.grad_sample``.

    Two engines, the same numbers: ``"linear"`` for a model of ``nn.Linear``
    layers only (:func:`linear_only`; a weight's entry is a
    :class:`LinearSamples`, a bias's the ``(batch, out)`` output gradients)
    and ``"opacus"``, Opacus's ``GradSampleModule`` hooks for any layer it
    supports (``loss_reduction="sum"``: a sample's entry is its term of
    whatever loss is backpropagated, unscaled). ``"auto"`` takes the first
    that applies; Opacus is then imported only for a model that needs it. On
    exit the hooks and every attribute put on the parameters and modules are
    removed: the caller's module is left as a plain one.
    """
    if engine not in ("auto", "linear", "opacus"):
        raise ValueError(f"engine: {engine!r} is not one; allowed: auto, linear, opacus")
    if engine == "linear" or (engine == "auto" and linear_only(model)):
        if not linear_only(model):
            raise ValueError("engine: 'linear' needs a model whose trainable layers are all nn.Linear")
        check_model(model)  # a parameterless BatchNorm mixes samples too
        with _linear_per_sample(model):
            yield
        return
    with _opacus_per_sample(model):
        yield


@contextmanager
def _linear_per_sample(model: nn.Module) -> Iterator[None]:
    """:func:`per_sample_gradients` for ``nn.Linear`` layers: the inputs and output gradients, recorded by hooks."""
    import torch

    def record(module: nn.Module, a: torch.Tensor, g: torch.Tensor) -> None:
        weight: torch.Tensor | LinearSamples
        if a.dim() == 2:
            weight, bias = LinearSamples(g, a), g
        else:  # a sequence: each sample's gradient sums over its positions, so it is built
            weight = torch.einsum("n...o,n...i->noi", g, a)
            bias = g.reshape(len(g), -1, g.shape[-1]).sum(1)
        for p, entry in ((module.weight, weight), (module.bias, bias)):
            if p is None or not p.requires_grad:
                continue
            before = getattr(p, "grad_sample", None)
            p.grad_sample = entry if before is None else _materialised(before) + _materialised(entry)  # type: ignore[union-attr]  # grad_sample: the per-sample attribute this module (as Opacus) puts on a parameter

    def forward_hook(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        if torch.is_grad_enabled() and out.requires_grad:
            a = args[0].detach()
            out.register_hook(lambda g: record(module, a, g.detach()))

    layers = [m for m in model.modules() if any(p.requires_grad for p in m.parameters(recurse=False))]
    handles = [m.register_forward_hook(forward_hook) for m in layers]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        for p in model.parameters():
            if hasattr(p, "grad_sample"):
                del p.grad_sample


def _materialised(entry: torch.Tensor | LinearSamples) -> torch.Tensor:
    """A per-sample entry as the ``(batch, *param.shape)`` tensor (a :class:`LinearSamples` multiplied out)."""
    import torch

    return torch.einsum("no,ni->noi", entry.g, entry.a) if isinstance(entry, LinearSamples) else entry


@contextmanager
def _opacus_per_sample(model: nn.Module) -> Iterator[None]:
    """:func:`per_sample_gradients` by Opacus's ``GradSampleModule`` (refusing, first, what it cannot serve)."""
    from opacus.grad_sample import GradSampleModule

    check_model(model)
    added = ("activations", "max_batch_len")
    had = {(id(m), attr) for m in model.modules() for attr in added if hasattr(m, attr)}
    wrapper = GradSampleModule(model, batch_first=True, loss_reduction="sum", strict=True)
    try:
        yield
    finally:
        wrapper._close()  # removes the hooks and grad_sample/_forward_counter of the parameters
        for m in model.modules():
            for attr in added:
                if hasattr(m, attr) and (id(m), attr) not in had:
                    delattr(m, attr)


# ------------------------------------------------------------------ which models
@contextmanager
def _training_mode(model: nn.Module) -> Iterator[None]:
    """Inside the block every submodule is in train mode; afterwards each has its own mode back.

    Opacus validates a model as it trains (its validator refuses a model in
    eval mode), and a caller's model may be in either mode.
    """
    modes = [(m, m.training) for m in model.modules()]
    model.train()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def _first_sentence(text: str) -> str:
    """Opacus's reasons are paragraphs; a run's error message keeps their first sentence."""
    return text.strip().split(". ")[0].rstrip(".")


def model_problems(model: nn.Module) -> list[str]:
    """``"name (Type): why"`` for each module of ``model`` that DP-SGD cannot train; empty if none.

    Three sources: Opacus's ``ModuleValidator`` (BatchNorm mixes the samples
    of a batch, so a sample's gradient depends on the others and is
    undefined; InstanceNorm's running statistics are unprivatised state),
    ``GradSampleModule.validate`` (a trainable layer holding buffers gets no
    per-sample gradients), and a BatchNorm without parameters, which Opacus
    lets through although it mixes samples just the same. A model of
    ``nn.Linear`` layers and parameterless, bufferless modules (the MLP) has
    none, and is passed without importing Opacus.
    """
    if linear_only(model) and not any(True for _ in model.buffers()):
        return []
    from opacus.grad_sample import GradSampleModule
    from opacus.validators import ModuleValidator
    from torch.nn.modules.batchnorm import _BatchNorm

    with _training_mode(model):
        opacus_errors = [
            *ModuleValidator.validate(model, strict=False),
            *GradSampleModule.validate(model, strict=False),
        ]
        problems = []
        for name, module in model.named_modules():
            label = f"{name or '(the model)'} ({type(module).__name__})"
            trainable = any(p.requires_grad for p in module.parameters(recurse=False))
            validator = ModuleValidator.VALIDATORS.get(type(module))
            reasons = [_first_sentence(str(e)) for e in validator(module)] if trainable and validator else []
            if not reasons and trainable and any(True for _ in module.buffers()):
                reasons = ["a trainable layer with buffers, for which Opacus computes no per-sample gradients"]
            if not reasons and isinstance(module, _BatchNorm):
                reasons = ["BatchNorm normalises each sample with its batch's statistics, mixing the samples"]
            problems += [f"{label}: {reason}" for reason in reasons]
    if opacus_errors and not problems:  # a check of Opacus's this module does not name: pass its words on
        problems = [_first_sentence(str(e)) for e in opacus_errors]
    return problems


def check_model(model: nn.Module) -> None:
    """Refuse a model whose per-sample gradients are undefined or not computable, before any training.

    Raises
    ------
    ValueError
        Naming the offending modules and what is allowed instead.
    """
    problems = model_problems(model)
    if problems:
        raise ValueError(
            f"dp-noise-multiplier: model {type(model).__name__} cannot be trained with DP-SGD: "
            f"{'; '.join(problems)}; allowed: layers that treat each sample on its own and hold no "
            "buffers (e.g. GroupNorm or LayerNorm instead of BatchNorm, InstanceNorm without running statistics)"
        )
