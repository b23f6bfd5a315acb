"""Which samples the membership attacks use, and the checks of the ``mia-*`` keys.

The attacks themselves (:mod:`flower_dl.privacy.membership`) only turn losses
and probabilities into numbers; what they are run on is drawn here, per node
and reproducibly: the members (the node's own training samples), the
non-members matched to their class histogram (:func:`attack_samples`), and the
attacker's public reference and population halves of the test set
(:func:`public_split`). Also here: how many a node can supply
(:func:`attack_supply`), which rounds are attacked (:func:`attacked_round`),
and the checks of ``mia-samples``, ``mia-reference-models`` and ``mia-every``
given outside a run config.

Pure numpy, like the attacks.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np

__all__ = [
    "attack_samples",
    "attack_supply",
    "attacked_round",
    "check_mia_every",
    "check_mia_reference_models",
    "check_mia_samples",
    "public_split",
]


def public_split(num_test: int, nonmembers: np.ndarray, seed: int, *, node: int) -> tuple[np.ndarray, np.ndarray]:
    """The attacker's data: test samples that are not the attack's non-members, split into reference and population.

    The attacker (a curious neighbour) uses only the public test split that
    every node holds: it trains its reference models on one half and draws
    RMIA's population samples ``z`` from the other, so that no reference
    model trains on an attacked sample or on a ``z`` (privacy-meter's
    offline setting: "all population data are OUT for all models"). A
    neighbour also holds its own samples and what it received; they are left
    out so that no reference model sees one of the attacked node's samples
    (nodes that share a class can hold the same sample), which would make
    the attack weaker on exactly those samples: the attack is the same for
    every neighbour, and a lower bound for one that uses more.

    Returns
    -------
    tuple[numpy.ndarray, numpy.ndarray]
        ``(reference indices, population indices)`` into the test set, sorted,
        disjoint, neither holding a non-member; drawn with
        ``numpy.random.default_rng((seed, node, 12))``.
    """
    public = np.setdiff1d(np.arange(int(num_test)), np.asarray(nonmembers, dtype=np.int64))
    if len(public) < 2:
        raise ValueError(
            f"mia-reference-models: node {node}'s test set leaves {len(public)} sample(s) besides the attack's "
            f"non-members; allowed: at least 2 (lower mia-samples, or set mia-reference-models = 0)"
        )
    order = np.random.default_rng((int(seed), int(node), 12)).permutation(public)
    half = len(order) // 2
    return np.sort(order[half:]), np.sort(order[:half])


def check_mia_reference_models(value: object) -> int:
    """Validate ``mia-reference-models`` given outside a run config (a run config's: its schema, :mod:`flower_dl.config`)."""
    if isinstance(value, bool) or not isinstance(value, Integral) or int(value) < 0:
        raise ValueError(f"mia-reference-models: {value!r} must be an integer >= 0 (0: no RMIA)")
    return int(value)


def check_mia_every(value: object) -> int:
    """Validate ``mia-every`` given outside a run config (a run config's: its schema, :mod:`flower_dl.config`)."""
    if isinstance(value, bool) or not isinstance(value, Integral) or int(value) < 1:
        raise ValueError(f"mia-every: {value!r} must be an integer >= 1 (rounds; the last round is always attacked)")
    return int(value)


def attacked_round(server_round: int, every: int, num_rounds: int) -> bool:
    """Whether the models nodes send in ``server_round`` are attacked: every ``every``-th round, and the last."""
    return server_round == num_rounds or server_round % every == 0


def check_mia_samples(value: object) -> int:
    """Validate ``mia-samples``, the number of members (and of non-members) the attack uses per node.

    0 switches the attack off. Returns the value as an ``int``.
    """
    if isinstance(value, bool) or not isinstance(value, Integral) or int(value) < 0:
        raise ValueError(f"mia-samples: {value!r} must be an integer >= 0")
    return int(value)


def attack_supply(train_labels: np.ndarray, test_labels: np.ndarray) -> int:
    """The most members (and non-members) :func:`attack_samples` can draw for a node.

    Members come from the node's own training samples, non-members from the
    test samples of the node's classes: the smaller of the two counts.
    """
    train_labels = np.asarray(train_labels, dtype=np.int64).ravel()
    test_labels = np.asarray(test_labels, dtype=np.int64).ravel()
    return int(min(len(train_labels), np.isin(test_labels, np.unique(train_labels)).sum()))


def attack_samples(
    train_ids: np.ndarray,
    train_labels: np.ndarray,
    test_labels: np.ndarray,
    n: int,
    seed: int,
    *,
    node: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Pick the members and non-members the loss-threshold attack is run on, for one node.

    Members are ``n`` of the node's *original* training samples (never
    received ones: the question is what the node's model reveals about the
    node's own data). Non-members are ``n`` held-out test samples of the
    node's classes, with the members' class histogram: in the non-IID
    partitions a node knows only a few classes, and a non-member of a class
    the model never saw would have a high loss for that reason alone, making
    the attack look stronger than it is. Non-members are drawn per class
    (``min(members of c, test samples of c)`` of class ``c``, without
    replacement); if a class has too few test samples, the shortfall is
    filled uniformly at random from the node's classes' remaining test
    samples, so the histograms then differ only where the test set runs out.

    Parameters
    ----------
    train_ids : numpy.ndarray
        Ids of the node's original training samples.
    train_labels : numpy.ndarray
        Their labels, aligned with ``train_ids``.
    test_labels : numpy.ndarray
        Labels of the whole test set; non-members are indices into it.
    n : int
        How many members, and how many non-members (``mia-samples``).
    seed : int
        The run's seed. The draw uses ``numpy.random.default_rng((seed, node))``,
        so it is reproducible and independent between nodes of one run.
    node : int
        The node's partition id (keys the draw; named in errors).

    Returns
    -------
    tuple[numpy.ndarray, numpy.ndarray]
        ``(member ids, non-member test indices)``, each sorted ``int64`` of
        length ``n`` (both empty for ``n = 0``).

    Raises
    ------
    ValueError
        When ``n`` is invalid or more than the node has of either kind.
    """
    n = check_mia_samples(n)
    train_ids = np.asarray(train_ids, dtype=np.int64).ravel()
    train_labels = np.asarray(train_labels, dtype=np.int64).ravel()
    test_labels = np.asarray(test_labels, dtype=np.int64).ravel()
    if len(train_ids) != len(train_labels):
        raise ValueError(f"train_ids and train_labels differ in length: {len(train_ids)} vs {len(train_labels)}")
    classes = np.unique(train_labels)
    candidates = np.flatnonzero(np.isin(test_labels, classes))
    if n > len(train_ids) or n > len(candidates):
        raise ValueError(
            f"mia-samples: {n} is more than node {node} can supply (it holds {len(train_ids)} training samples / "
            f"{len(candidates)} test samples of its classes); allowed: at most "
            f"{min(len(train_ids), len(candidates))}, or 0 to switch the attack off"
        )
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng((int(seed), int(node)))
    picked = rng.choice(len(train_ids), size=n, replace=False)
    members = np.sort(train_ids[picked])
    nonmembers = _matched_nonmembers(train_labels[picked], test_labels, candidates, rng)
    return members, nonmembers


def _matched_nonmembers(
    member_labels: np.ndarray,
    test_labels: np.ndarray,
    candidates: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Test indices matching the members' class histogram, topped up from ``candidates`` where a class runs out."""
    chosen: list[np.ndarray] = []
    classes, counts = np.unique(member_labels, return_counts=True)
    for c, want in zip(classes.tolist(), counts.tolist(), strict=True):
        pool = candidates[test_labels[candidates] == c]
        chosen.append(rng.choice(pool, size=min(want, len(pool)), replace=False))
    taken = np.concatenate(chosen)
    short = len(member_labels) - len(taken)
    if short > 0:
        rest = np.setdiff1d(candidates, taken, assume_unique=True)
        taken = np.concatenate([taken, rng.choice(rest, size=short, replace=False)])
    return np.sort(taken).astype(np.int64)
