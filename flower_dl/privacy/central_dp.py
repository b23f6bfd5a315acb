"""Central DP's values and its epsilon: Gaussian noise on the parameter server's mean of clipped updates.

The server-side mechanism itself is Flower's (``DifferentialPrivacyServerSideFixedClipping``, wrapped by
:class:`flower_dl.strategies.server.CentralDP`); here are what it asks of the run config
(:func:`check_central_values`, :func:`check_central_strategy`, :data:`CENTRAL_STRATEGIES`) and the node-level
epsilon it has spent after some rounds (:func:`central_epsilon`, by the same RDP accountant as DP-SGD's,
:func:`flower_dl.privacy.dp.epsilon`).

Like :mod:`flower_dl.privacy.dp`, this module imports neither Opacus nor torch at module level: the run
config imports it to validate.
"""

from __future__ import annotations

import math

from flower_dl.privacy.dp import _check_number, epsilon

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


def central_epsilon(noise_multiplier: float, rounds: int, delta: float) -> float:
    """The node-level ``epsilon`` at ``delta`` of ``rounds`` releases of the noised mean (central DP).

    Each round every node's clipped update enters the mean (no sampling, so no amplification: sample
    rate 1), with Gaussian noise of ``noise_multiplier`` times the sensitivity: ``rounds`` Gaussian
    mechanisms composed, adding or removing one node's data as the neighbouring relation.
    """
    return epsilon(noise_multiplier, 1.0, rounds, delta)
