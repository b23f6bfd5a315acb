"""The mixing schedules' run-config checks: ``mixing-schedule``, ``epidemic-peers``, ``gossip-steps``.

The schedules themselves need scipy (:mod:`flower_dl.topology.schedules`);
their checks run in every ClientApp process that validates a run config, so
they are here, in pure Python (no scipy, no networkx), like the graph
families' checks in :mod:`flower_dl.topology.checks`.
"""

from __future__ import annotations

from flower_dl.registry import MIXING_SCHEDULES
from flower_dl.topology.checks import _is_int

SCHEDULES: tuple[str, ...] = MIXING_SCHEDULES.names()
"""Names accepted by the run-config key ``mixing-schedule`` (:mod:`flower_dl.topology.schedules`)."""


def check_schedule(schedule: object, num_nodes: int, epidemic_peers: object) -> None:
    """Check ``mixing-schedule`` and, for ``epidemic``, ``epidemic-peers``, given outside a run config.

    A run config's are checked by its schema (:mod:`flower_dl.config`), then by
    :func:`check_epidemic_peers`; this is the guard of the schedules' own functions.

    ``epidemic-peers`` is checked only for ``epidemic``, the one schedule that
    reads it, because its allowed range depends on ``num-nodes``: a default of
    a 10-node sweep must not fail a 3-node run of another schedule.

    Parameters
    ----------
    schedule : object
        Value of ``mixing-schedule``; one of :data:`SCHEDULES`.
    num_nodes : int
        Value of ``num-nodes`` (checked elsewhere; here only its lower bound for
        the schedules that need a peer).
    epidemic_peers : object
        Value of ``epidemic-peers``: models each node sends per round, an
        integer in ``1..num-nodes-1``.

    Raises
    ------
    ValueError
        Naming the key, the value and what is allowed, e.g.
        ``"epidemic-peers: 0 is outside 1..num-nodes-1 (num-nodes is 5)"``.
    """
    if not isinstance(schedule, str) or schedule not in SCHEDULES:
        raise ValueError(f"mixing-schedule: {schedule!r} is not a known schedule; allowed: {', '.join(SCHEDULES)}")
    if schedule in ("one-peer-exponential", "epidemic") and num_nodes < 2:
        raise ValueError(
            f"num-nodes: {num_nodes} is too small for mixing-schedule {schedule!r}; allowed: an integer >= 2"
        )
    if schedule == "epidemic":
        if not _is_int(epidemic_peers):
            raise ValueError(
                f"epidemic-peers: {epidemic_peers!r} must be an integer in 1..num-nodes-1 (num-nodes is {num_nodes})"
            )
        check_epidemic_peers(schedule, num_nodes, int(epidemic_peers))


def check_epidemic_peers(schedule: str, num_nodes: int, epidemic_peers: int) -> None:
    """What ``epidemic`` asks of ``epidemic-peers`` and ``num-nodes`` together: ``1..num-nodes-1`` peers.

    Only ``epidemic`` reads ``epidemic-peers``, so no other schedule is held to it: a default of a
    10-node sweep must not fail a 3-node run of another schedule. The values are already valid on their
    own (the run config's schema checked them, or :func:`check_schedule`).

    Raises
    ------
    ValueError
        ``"epidemic-peers: 0 is outside 1..num-nodes-1 (num-nodes is 5)"``.
    """
    if schedule == "epidemic" and not 1 <= epidemic_peers <= num_nodes - 1:
        raise ValueError(f"epidemic-peers: {epidemic_peers!r} is outside 1..num-nodes-1 (num-nodes is {num_nodes})")


def check_gossip_steps(steps: object) -> None:
    """Check ``gossip-steps`` (gossip steps per round) given outside a run config: an integer >= 1.

    Raises
    ------
    ValueError
        ``"gossip-steps: 0 must be an integer >= 1"``.
    """
    if not _is_int(steps) or int(steps) < 1:
        raise ValueError(f"gossip-steps: {steps!r} must be an integer >= 1")
