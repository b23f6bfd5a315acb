"""DP-SGD for local training: per-sample clipping, Gaussian noise, Poisson batches, and its epsilon.

:func:`flower_dl.node.training.train` takes a :class:`DPSGD` to privatise each SGD
step the way Opacus's ``DPOptimizer`` does (Abadi et al. 2016): every
sample's gradient is clipped to an L2 norm, the clipped gradients are summed,
Gaussian noise is added and the sum is divided by the expected batch size.
The batches are Poisson-sampled, as the Renyi-DP accountant that turns the
noise, the sampling rate and the number of steps into an ``(epsilon, delta)``
guarantee (:func:`epsilon`) assumes.

Opacus takes seconds to import, and a node's every ``train`` message runs in
a fresh process: this module imports neither Opacus nor torch at module
level, so that a run without DP never pays for them.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    import torch
    from torch import nn

CLIP_EPS = 1e-6
"""Added to a per-sample norm before dividing by it (Opacus's ``DPOptimizer``): a zero gradient gets factor 1."""


@dataclass(frozen=True)
class DPSGD:
    """How each local SGD step is privatised.

    Every sample's gradient (over all trainable parameters together) is
    clipped to L2 norm ``clip``, so that no sample moves the model by more
    than ``clip``; Gaussian noise of standard deviation
    ``noise_multiplier * clip`` is added to the sum of the clipped gradients,
    which is then divided by the expected batch size (Opacus's convention for
    ``loss_reduction="mean"``: the noise does not depend on how many samples
    a Poisson batch happened to draw, which would leak it).

    Attributes
    ----------
    clip : float
        The per-sample L2 bound ``C`` (``> 0``).
    noise_multiplier : float
        ``sigma``: the noise's standard deviation in units of ``clip`` (``>= 0``; 0: clipping only,
        no privacy).
    poisson : bool
        ``True``: each step's batch holds every sample independently with probability
        ``q = 1 / ceil(n / batch_size)`` (expected size ``q * n``), ``ceil(n / batch_size)``
        steps an epoch: the sampling of Opacus's ``DPDataLoader`` (``UniformWithReplacementSampler``)
        that the accountant's privacy amplification by subsampling assumes. ``False`` (a testing
        aid): the plain loop's shuffled fixed-size batches, normalised by the actual batch size;
        :func:`epsilon` then guarantees nothing.
    """

    clip: float
    noise_multiplier: float
    poisson: bool = True

    def __post_init__(self) -> None:
        # inf is accepted here (clipping that never bites: a test's handle on the plain loop); the run
        # config's finite bound is enforced by its schema (flower_dl.config)
        if not self.clip > 0:
            raise ValueError(f"DPSGD.clip: {self.clip!r} is out of range; allowed: a number > 0")
        if not (self.noise_multiplier >= 0 and math.isfinite(self.noise_multiplier)):
            raise ValueError(
                f"DPSGD.noise_multiplier: {self.noise_multiplier!r} is out of range; allowed: a finite number >= 0"
            )


# ------------------------------------------------------------------ run config
def _check_number(key: str, value: object, allowed: str, ok: Callable[[float], bool]) -> None:
    """Raise ``ValueError`` naming ``key`` unless ``value`` is a real number (not a bool) that ``ok`` accepts."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{key}: {value!r} is not a number; allowed: {allowed}")
    if not ok(float(value)):
        raise ValueError(f"{key}: {value!r} is out of range; allowed: {allowed}")


def check_values(clip: object, noise_multiplier: object, delta: object) -> None:
    """Check DP-SGD's values (``dp-clip``, ``dp-noise-multiplier``, ``dp-delta``) given outside a run config.

    A run config's are checked by its schema (:mod:`flower_dl.config`), with the same bounds.

    Raises
    ------
    ValueError
        Naming the key, the value and what is allowed: ``dp-clip`` a finite number ``> 0``,
        ``dp-noise-multiplier`` a finite number ``>= 0``, ``dp-delta`` in the open interval (0, 1)
        (delta is a probability of failure: 0 admits no Gaussian guarantee, 1 is no guarantee).
    """
    _check_number("dp-clip", clip, "a finite number > 0", lambda v: math.isfinite(v) and v > 0)
    _check_number(
        "dp-noise-multiplier", noise_multiplier, "a finite number >= 0", lambda v: math.isfinite(v) and v >= 0
    )
    _check_number("dp-delta", delta, "a number in the open interval (0, 1)", lambda v: 0 < v < 1)


CENTRAL_STRATEGIES: tuple[str, ...] = ("fedavg", "fedprox")
"""The parameter-server strategies central DP serves: those whose aggregation is FedAvg's mean, the one the
Gaussian mechanism's sensitivity ``clip / n`` holds for (Flower's own accountant asks the same)."""


def check_central_values(noise_multiplier: object, clip: object, strategy: str) -> None:
    """Check central DP's values given outside a run config.

    A run config's are checked by its schema (:mod:`flower_dl.config`), then by :func:`check_central_strategy`.

    Raises
    ------
    ValueError
        Naming the key, the value and what is allowed: ``central-dp-noise-multiplier`` a finite number
        ``>= 0`` (0: off), ``central-dp-clip`` a finite number ``> 0``, and, with noise, a ``strategy`` in
        :data:`CENTRAL_STRATEGIES` (a decentralized strategy has no server that could add the noise; FedAvgM,
        FedAdam, the medians and Krum transform the mean, so its sensitivity is not ``clip / n``).
    """
    _check_number(
        "central-dp-noise-multiplier", noise_multiplier, "a finite number >= 0 (0: off)",
        lambda v: math.isfinite(v) and v >= 0,
    )  # fmt: skip
    _check_number("central-dp-clip", clip, "a finite number > 0", lambda v: math.isfinite(v) and v > 0)
    check_central_strategy(noise_multiplier, strategy)  # type: ignore[arg-type]  # a real number: _check_number passed it


def check_central_strategy(noise_multiplier: float, strategy: str) -> None:
    """What central DP asks of ``central-dp-noise-multiplier`` and ``strategy`` together.

    Each value is already valid on its own (the run config's schema, :mod:`flower_dl.config`, checked it,
    or :func:`check_central_values`): noise needs a strategy in :data:`CENTRAL_STRATEGIES`.

    Raises
    ------
    ValueError
        Naming ``central-dp-noise-multiplier``, its value, the strategy and what is allowed.
    """
    if noise_multiplier > 0 and strategy not in CENTRAL_STRATEGIES:
        raise ValueError(
            f"central-dp-noise-multiplier: {noise_multiplier!r} with strategy {strategy!r}; allowed: central DP "
            f"with a parameter-server strategy averaging by FedAvg's mean ({', '.join(CENTRAL_STRATEGIES)}), "
            "or 0 (for a decentralized strategy use DP-SGD: dp-noise-multiplier)"
        )


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


# ------------------------------------------------------------------ sampling
def steps_per_epoch(n: int, batch_size: int) -> int:
    """``ceil(n / batch_size)``: the steps of an epoch, Poisson or not (as many as the plain loop's batches)."""
    return -(-n // batch_size)


def sample_rate(n: int, batch_size: int) -> float:
    """``q = 1 / ceil(n / batch_size)``: Opacus's ``DPDataLoader`` rate, one expected pass over the data an epoch."""
    return 1.0 / steps_per_epoch(n, batch_size)


def expected_batch_size(n: int, batch_size: int) -> float:
    """``q * n``: what a Poisson step divides its gradient sum by.

    Opacus's ``PrivacyEngine`` truncates it to an integer; the exact
    expectation is used here (they differ by less than one sample). Either
    is a constant of the round, which is what the privacy analysis needs.
    """
    return n * sample_rate(n, batch_size)


# ------------------------------------------------------------------ accounting
def epsilon_of_history(history: Iterable[tuple[float, float, int]], delta: float) -> float:
    """The ``epsilon`` at ``delta`` of a sequence of DP-SGD phases, composed in one RDP accountant.

    Parameters
    ----------
    history : iterable of (noise_multiplier, sample_rate, steps)
        One entry per phase (e.g. per round: a node's training set, hence its rate, can change
        between rounds). Composition adds the phases' Renyi divergences order by order, which is
        tighter than adding their epsilons.
    delta : float
        The target ``delta``.

    Returns
    -------
    float
        0.0 without any step; ``math.inf`` when a phase with steps has no noise.
    """
    phases = [(float(s), float(q), int(k)) for s, q, k in history if k > 0]
    if not phases:
        return 0.0
    if any(s == 0 for s, _, _ in phases):
        return math.inf
    from opacus.accountants import RDPAccountant

    accountant = RDPAccountant()
    accountant.history = phases
    with warnings.catch_warnings():  # at an extreme epsilon the best order is an end of the range: still a bound
        warnings.filterwarnings("ignore", message="Optimal order is the (smallest|largest) alpha")
        return float(accountant.get_epsilon(delta))


def epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """The ``epsilon`` at ``delta`` of ``steps`` Poisson-sampled DP-SGD steps (Opacus's RDP accountant).

    ``math.inf`` with no noise, 0.0 with no step.
    """
    return epsilon_of_history([(noise_multiplier, sample_rate, steps)], delta)


def central_epsilon(noise_multiplier: float, rounds: int, delta: float) -> float:
    """The node-level ``epsilon`` at ``delta`` of ``rounds`` releases of the noised mean (central DP).

    Each round every node's clipped update enters the mean (no sampling, so no amplification: sample
    rate 1), with Gaussian noise of ``noise_multiplier`` times the sensitivity: ``rounds`` Gaussian
    mechanisms composed, adding or removing one node's data as the neighbouring relation.
    """
    return epsilon(noise_multiplier, 1.0, rounds, delta)


# ------------------------------------------------------------------ privatisation
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


def _sample_norms(entry: torch.Tensor | LinearSamples) -> torch.Tensor:
    """Each sample's L2 norm of one parameter's per-sample gradients (``||g_i|| ||a_i||`` for a LinearSamples)."""
    if isinstance(entry, LinearSamples):
        return entry.g.norm(2, dim=1) * entry.a.norm(2, dim=1)
    return entry.reshape(len(entry), -1).norm(2, dim=1)


def _weighted_sum(factors: torch.Tensor, entry: torch.Tensor | LinearSamples) -> torch.Tensor:
    """``sum_i factors_i x per-sample gradient_i`` of one parameter (one matrix product for a LinearSamples)."""
    import torch

    if isinstance(entry, LinearSamples):
        return (entry.g * factors[:, None]).T @ entry.a
    return torch.einsum("i,i...->...", factors, entry)


def clip_factors(grad_samples: Sequence[torch.Tensor | LinearSamples], clip: float, scale: float = 1.0) -> torch.Tensor:
    """Per-sample factors ``min(1, clip / (||g_i|| + 1e-6))``, ``g_i`` a sample's gradient over all parameters.

    Opacus's formula. ``grad_samples`` (one tensor ``(batch, *param.shape)``
    per parameter) may hold ``g_i / scale``, as a backward pass through a
    normalised loss leaves them: the norms are scaled back first.
    """
    import torch

    per_param = [_sample_norms(g) for g in grad_samples]
    norms = torch.stack(per_param, dim=1).norm(2, dim=1) * scale
    return (clip / (norms + CLIP_EPS)).clamp(max=1.0)


def privatize(
    params: Sequence[torch.Tensor], dp: DPSGD, normaliser: float, generator: torch.Generator | None = None
) -> None:
    """Replace each ``p.grad`` by its DP-SGD estimate: clipped per-sample gradients, summed, noised, over ``normaliser``.

    Expects what a backward pass of ``sum_i loss_i / normaliser`` leaves
    inside :func:`per_sample_gradients`: ``p.grad`` the batch's gradient and
    ``p.grad_sample`` its per-sample terms ``g_i / normaliser``. When no
    sample is clipped (every factor exactly 1) ``p.grad`` already is the
    clipped sum and is kept as it is: bitwise the plain loop's gradient. A
    parameter without per-sample terms (an empty Poisson batch, a layer the
    forward pass did not use) has a zero data gradient and still takes the
    noise: the analysis assumes every step is noised, whatever was sampled.
    The noise is drawn from ``generator`` (on the parameters' device), in
    parameter order, so that a seeded generator repeats a run.
    """
    import torch

    params = list(params)
    samples = [getattr(p, "grad_sample", None) for p in params]
    for p, g in zip(params, samples):
        if isinstance(g, list):
            raise RuntimeError("privatize: several backward passes were accumulated; allowed: one per step")
        if g is None and p.grad is not None:
            raise RuntimeError("privatize: a gradient without per-sample gradients (is the model in eval mode?)")
    present = [g for g in samples if g is not None]
    factors = clip_factors(present, dp.clip, normaliser) if present else None
    clipped = factors is not None and not bool((factors == 1.0).all())
    with torch.no_grad():
        for p, g in zip(params, samples):
            if g is None:
                p.grad = torch.zeros_like(p)
            elif clipped:
                assert factors is not None  # clipped implies factors
                p.grad = _weighted_sum(factors, g).to(p.dtype)
            if dp.noise_multiplier > 0:
                std = dp.noise_multiplier * dp.clip
                noise = torch.normal(0.0, std, size=p.shape, generator=generator, device=p.device, dtype=p.dtype)
                cast("torch.Tensor", p.grad).add_(noise.div_(normaliser))  # set above, or by the backward pass


def private_backward(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    dp: DPSGD,
    normaliser: float,
    generator: torch.Generator | None = None,
) -> float:
    """One DP-SGD gradient of a batch into the trainable parameters' ``.grad``; return the batch's summed loss.

    Call inside :func:`per_sample_gradients`, the model in train mode. One
    forward and one backward pass of ``sum_i CE_i / normaliser`` give both
    the batch's gradient and the per-sample ones (the same dropout masks in
    both), then :func:`privatize`. An empty batch runs no forward pass: its
    gradient is the noise alone.
    """
    from torch.nn import functional as F

    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.grad = None
        p.grad_sample = None  # type: ignore[attr-defined]  # grad_sample: the per-sample attribute the engines put on a parameter
    loss_sum = 0.0
    if len(labels):
        loss = F.cross_entropy(model(images), labels, reduction="sum")
        with warnings.catch_warnings():
            # the first layer's input needs no gradient: torch warns that its full backward hook sees outputs only,
            # which is all Opacus's hook uses
            warnings.filterwarnings("ignore", message="Full backward hook is firing", category=UserWarning)
            (loss / normaliser).backward()
        loss_sum = loss.item()
    privatize(params, dp, normaliser, generator)
    return loss_sum


def privatized_gradients(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    dp: DPSGD,
    *,
    normaliser: float | None = None,
    generator: torch.Generator | None = None,
) -> list[torch.Tensor]:
    """The DP-SGD gradient of one batch, one tensor per trainable parameter (for inspection and tests).

    What one step of :func:`flower_dl.node.training.train` with ``dp`` computes
    before the optimizer moves the weights. The model runs in train mode
    (Opacus records per-sample gradients only there; dropout is then
    active) and is left as it was, gradients cleared. ``normaliser``
    defaults to the batch size (``poisson=False``'s convention).
    """
    norm = float(len(labels)) if normaliser is None else float(normaliser)
    with _training_mode(model), per_sample_gradients(model):
        private_backward(model, images, labels, dp, norm, generator)
        params = [p for p in model.parameters() if p.requires_grad]
        grads = [cast("torch.Tensor", p.grad).detach().clone() for p in params]  # privatize set every .grad
        for p in params:
            p.grad = None
    return grads
