"""DP-SGD for local training: per-sample clipping, Gaussian noise, Poisson batches, and its epsilon.

:func:`flower_dl.node.training.train` takes a :class:`DPSGD` to privatise each SGD
step the way Opacus's ``DPOptimizer`` does (Abadi et al. 2016): every
sample's gradient is clipped to an L2 norm, the clipped gradients are summed,
Gaussian noise is added and the sum is divided by the expected batch size.
The batches are Poisson-sampled, as the Renyi-DP accountant that turns the
noise, the sampling rate and the number of steps into an ``(epsilon, delta)``
guarantee (:func:`epsilon`) assumes. The per-sample gradients, and the check
of which models have them, are in :mod:`flower_dl.privacy.per_sample`; central
DP's values and epsilon in :mod:`flower_dl.privacy.central_dp`.

Opacus takes seconds to import, and a node's every ``train`` message runs in
a fresh process: this module imports neither Opacus nor torch at module
level, so that a run without DP never pays for them.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from flower_dl.privacy.per_sample import LinearSamples, _training_mode, per_sample_gradients

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


# ------------------------------------------------------------------ privatisation
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
