"""Membership inference and exposure: what a node's model and its exchange reveal about its samples.

Two complementary measures of the privacy a node gives up.

*Membership inference* asks what the node's trained model reveals. The
loss-threshold attack of Yeom et al. ("Privacy Risk in Machine Learning:
Analyzing the Connection to Overfitting", CSF 2018) predicts that a sample was
in the training set when the model's loss on it is below a threshold ``t``.
Sweeping ``t`` traces a ROC curve; we report its area (:func:`attack_auc`)
and, following Carlini et al. ("Membership Inference Attacks From First
Principles", S&P 2022), its true-positive rate at a low false-positive rate
(:func:`tpr_at_fpr`), which says whether the attack can pick out *some*
members with confidence rather than how it does on average.

*Exposure* asks what the exchange itself revealed: the fraction of a node's
original sample ids that ended up with other nodes (:func:`exposed_fraction`,
:func:`exposure_report`). It is counted by id, so it sees only copies: an item
built by a privacy mechanism (:mod:`flower_dl.privacy.mechanisms`: a noisy image, a
class mean) carries a fresh, negative id that matches no original id and so
exposes nothing here; how close such items come to the sender's images is
:func:`flower_dl.privacy.mechanisms.nn_distance`'s question.

Everything here is pure numpy/scipy: the node computes losses, the
functions below turn them into numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from numbers import Integral

import numpy as np

__all__ = [
    "RMIA_OFFLINE_A",
    "attack_auc",
    "attack_samples",
    "attack_supply",
    "attacked_round",
    "check_mia_every",
    "check_mia_reference_models",
    "check_mia_samples",
    "edge_exposure",
    "exposed_fraction",
    "exposure_report",
    "public_split",
    "rmia_scores",
    "score_metrics",
    "tpr_at_fpr",
]


# --------------------------------------------------------- membership inference
def _losses(name: str, values: Iterable[float] | np.ndarray) -> np.ndarray:
    """Losses as a flat float64 array; NaN would make every threshold comparison meaningless."""
    arr = np.asarray(values, dtype=np.float64).ravel()
    if np.isnan(arr).any():
        raise ValueError(f"{name}: contains NaN; allowed: real losses (inf is fine)")
    return arr


def attack_auc(member_losses: Iterable[float] | np.ndarray, nonmember_losses: Iterable[float] | np.ndarray) -> float:
    """Area under the ROC curve of the loss-threshold attack.

    The attack scores a sample by ``-loss`` (a lower loss means "member"), so
    its AUC is the probability that a random member has a lower loss than a
    random non-member, ties counted half::

        AUC = P(l_member < l_nonmember) + 0.5 * P(l_member == l_nonmember)

    This is the Mann-Whitney U statistic of the non-member losses divided by
    ``n_member * n_nonmember``, computed exactly from mid-ranks
    (``scipy.stats.rankdata``) rather than by integrating a sampled ROC curve,
    so it is the same number a pairwise count gives, in ``O((n + m) log(n + m))``.

    Parameters
    ----------
    member_losses, nonmember_losses : array_like
        Per-sample losses of the attacked model on members (its training
        samples) and non-members (held-out samples).

    Returns
    -------
    float
        In ``[0, 1]``: 1 when every member has a lower loss than every
        non-member, 0 when reversed, 0.5 for an attack no better than chance.
        NaN when either side is empty (the attack was not run).
    """
    from scipy.stats import rankdata

    members = _losses("member_losses", member_losses)
    nonmembers = _losses("nonmember_losses", nonmember_losses)
    n, m = len(members), len(nonmembers)
    if n == 0 or m == 0:
        return float("nan")
    ranks = rankdata(np.concatenate([nonmembers, members]))  # mid-ranks: a tie adds 0.5 to each side
    u_nonmember = ranks[:m].sum() - m * (m + 1) / 2.0  # pairs with l_nonmember > l_member, ties half
    return float(u_nonmember / (n * m))


def tpr_at_fpr(
    member_losses: Iterable[float] | np.ndarray,
    nonmember_losses: Iterable[float] | np.ndarray,
    fpr: float = 0.01,
) -> float:
    """True-positive rate of the loss-threshold attack at a false-positive rate of at most ``fpr``.

    A threshold ``t`` predicts "member" for every sample with ``loss <= t``,
    so a threshold always takes in *all* samples of equal loss together:
    tied samples cannot be split between the two predictions. At ``t``,
    ``TPR(t)`` is the fraction of members with ``loss <= t`` and ``FPR(t)``
    the fraction of non-members with ``loss <= t``. The result is

        max { TPR(t) : FPR(t) <= fpr }

    over all thresholds, the empty one (``t = -inf``: nothing predicted a
    member, TPR 0 at FPR 0) included, so the answer exists for every ``fpr``.
    Both rates grow with ``t``, so the best threshold lies just below the
    ``(k + 1)``-th smallest non-member loss, ``k`` the most non-members allowed
    in (the largest ``k`` with ``k / n_nonmember <= fpr``): the result is the
    fraction of members whose loss is *strictly* below that loss (all members
    when ``k`` reaches every non-member).

    Parameters
    ----------
    member_losses, nonmember_losses : array_like
        Per-sample losses on members and non-members.
    fpr : float
        The false-positive rate allowed, in ``[0, 1]``. With few non-members
        a small ``fpr`` allows none (``fpr < 1 / n_nonmember``): then only
        members below every non-member count, which is strict but honest.

    Returns
    -------
    float
        In ``[0, 1]``; NaN when either side is empty.
    """
    if not 0.0 <= fpr <= 1.0:
        raise ValueError(f"fpr: {fpr!r} is out of range; allowed: a number in [0, 1]")
    members = np.sort(_losses("member_losses", member_losses))
    nonmembers = np.sort(_losses("nonmember_losses", nonmember_losses))
    n, m = len(members), len(nonmembers)
    if n == 0 or m == 0:
        return float("nan")
    allowed = _most_allowed(m, fpr)
    if allowed >= m:
        return 1.0
    below = np.searchsorted(members, nonmembers[allowed], side="left")  # members strictly below it
    return float(below / n)


def _most_allowed(m: int, fpr: float) -> int:
    """Largest ``k`` in ``0..m`` with ``k / m <= fpr``, exact where ``floor(fpr * m)`` rounds the wrong way."""
    k = min(int(np.floor(fpr * m)), m)
    while k < m and (k + 1) / m <= fpr:
        k += 1
    while k > 0 and k / m > fpr:
        k -= 1
    return k


# ------------------------------------------------------------------------ RMIA
RMIA_OFFLINE_A = 0.3
"""RMIA's offline coefficient ``a``: ``Pr(x) = (1 + a) / 2 * mean_OUT Pr(x | theta_ref) + (1 - a) / 2``.

With only OUT reference models (none trained on ``x``), their mean
underestimates ``Pr(x)`` over models that may or may not have seen ``x``;
the line above is the paper's linear fix-up (Zarifzadeh et al., ICML 2024,
Sec. 4.2). 0.3 is the value privacy-meter's RMIA uses by default; ``a = 1``
takes the OUT mean as it is.
"""

FPRS: tuple[tuple[str, float], ...] = (("1fpr", 0.01), ("0.1fpr", 0.001))
"""The low false-positive rates every attack is reported at, with their column suffixes (Carlini et al. 2022)."""


def _log_probs(name: str, values: Iterable[float] | np.ndarray, ndim: int) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != ndim:
        raise ValueError(f"{name}: has {arr.ndim} dimension(s); allowed: {ndim}")
    if np.isnan(arr).any() or (arr > 0).any():
        raise ValueError(f"{name}: holds NaN or a value > 0; allowed: log-probabilities (<= 0, -inf is fine)")
    return arr


def _log_mean_pr(log_ref: np.ndarray, offline_a: float) -> np.ndarray:
    """``log Pr(x)`` from the OUT reference models' log-probabilities (rows: samples, columns: models)."""
    from scipy.special import logsumexp

    mean_out = logsumexp(log_ref, axis=1) - np.log(log_ref.shape[1])
    # log((1 + a) / 2 * mean_out + (1 - a) / 2), exact for a = 1 (the second term vanishes)
    terms = [mean_out + np.log((1 + offline_a) / 2)]
    if offline_a < 1:
        terms.append(np.full_like(mean_out, np.log((1 - offline_a) / 2)))
    return np.logaddexp(*terms) if len(terms) == 2 else terms[0]


def rmia_scores(
    target_x: np.ndarray,
    reference_x: np.ndarray,
    target_z: np.ndarray,
    reference_z: np.ndarray,
    *,
    offline_a: float = RMIA_OFFLINE_A,
    gamma: float = 1.0,
    tie_break: bool = False,
) -> np.ndarray:
    """Offline RMIA scores (Zarifzadeh, Liu, Shokri, "Low-Cost High-Power Membership Inference Attacks", ICML 2024).

    The attack compares how much more likely the target model finds a sample
    ``x`` than models that did not train on it, against the same ratio for
    population samples ``z`` that no model trained on::

        LR(x, z) = (Pr(x | theta) / Pr(x)) / (Pr(z | theta) / Pr(z))
        score(x) = fraction of z with LR(x, z) > gamma

    ``Pr(. | theta)`` is the model's probability of the sample's true label
    (its softmax output), ``Pr(.)`` the mean over the reference models with
    the offline correction of :data:`RMIA_OFFLINE_A`. Dividing by ``Pr(x)``
    is what makes the attack strong: a sample every model finds easy is not
    taken for a member because its loss is low, which is what the
    loss-threshold attack does. This is privacy-meter's ``run_rmia`` with
    only OUT reference models (its offline setting), computed in log space so
    that probabilities that round to 0 or 1 in float32 keep their order;
    ``tests/test_rmia.py`` checks it against that formula.

    Parameters
    ----------
    target_x : numpy.ndarray, shape (n,)
        ``log Pr(x | theta)`` of the attacked samples under the target model.
    reference_x : numpy.ndarray, shape (n, k)
        The same under each of ``k`` reference models that did not train on them.
    target_z, reference_z : numpy.ndarray, shapes (m,) and (m, k)
        The same for ``m`` population samples.
    offline_a : float
        In ``(0, 1]``.
    gamma : float
        The likelihood-ratio threshold (> 0; the paper's default 1).
    tie_break : bool
        Order samples that beat the same number of ``z`` by their own ratio
        ``Pr(x | theta) / Pr(x)``: ``expit(log ratio) / (2 m)`` is added,
        less than the step ``1 / m`` between counts, so distinct scores keep
        their order. A larger ratio beats at least the same ``z`` at every
        ``gamma``, so this is the score's own refinement. Without it a few
        hundred ``z`` give scores in steps of ``1 / m`` and, on a model that
        generalises, several non-members tie at the top: no threshold then
        lets in at most 1% of them, and the TPR at 1% FPR reads 0, below the
        1% of a guess. The audit sets it; ``False`` is privacy-meter's score.

    Returns
    -------
    numpy.ndarray, shape (n,)
        In ``[0, 1]``; larger means "member".
    """
    tx, tz = _log_probs("target_x", target_x, 1), _log_probs("target_z", target_z, 1)
    rx, rz = _log_probs("reference_x", reference_x, 2), _log_probs("reference_z", reference_z, 2)
    if rx.shape[0] != len(tx) or rz.shape[0] != len(tz) or rx.shape[1] != rz.shape[1] or rx.shape[1] == 0:
        raise ValueError(
            f"reference_x {rx.shape} / reference_z {rz.shape} do not match target_x ({len(tx)},) / target_z "
            f"({len(tz)},); allowed: (n, k) and (m, k) with k >= 1 reference models"
        )
    if not 0 < offline_a <= 1:
        raise ValueError(f"offline_a: {offline_a!r} is out of range; allowed: a number in (0, 1]")
    if not gamma > 0:
        raise ValueError(f"gamma: {gamma!r} is out of range; allowed: a number > 0")
    if len(tz) == 0:
        raise ValueError("target_z: is empty; allowed: at least one population sample")
    ratio_x = tx - _log_mean_pr(rx, offline_a)
    ratio_z = np.sort(tz - _log_mean_pr(rz, offline_a))
    # LR(x, z) > gamma  <=>  ratio_z < ratio_x - log(gamma): count the z strictly below
    below = np.searchsorted(ratio_z, ratio_x - np.log(gamma), side="left")
    if not tie_break:
        return below / len(ratio_z)
    from scipy.special import expit

    return (below + expit(ratio_x) / 2) / len(ratio_z)


def score_metrics(member_scores: np.ndarray, nonmember_scores: np.ndarray, prefix: str) -> dict[str, float]:
    """``{prefix}-auc`` and ``{prefix}-tpr-{1,0.1}fpr`` of an attack whose larger score means "member".

    The ROC functions above threshold losses (smaller means member), so a
    score ``s`` is passed as the loss ``-s``: the same curve.
    """
    m, nm = -np.asarray(member_scores, dtype=np.float64), -np.asarray(nonmember_scores, dtype=np.float64)
    out = {f"{prefix}-auc": attack_auc(m, nm)}
    for suffix, fpr in FPRS:
        out[f"{prefix}-tpr-{suffix}"] = tpr_at_fpr(m, nm, fpr)
    return out


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


# --------------------------------------------------------------------- exposure
def _id_array(ids: Iterable[int] | np.ndarray) -> np.ndarray:
    return np.asarray(ids, dtype=np.int64).ravel()


def exposed_fraction(own_ids: np.ndarray, held_by_others: Iterable[np.ndarray]) -> float:
    """Fraction of a node's original samples that other nodes received in the exchange.

    A sample of node ``i`` counts as exposed when its id is among the ids
    that some *other* node *received* (from anyone). Not "holds": in the
    study's partitioners nodes that share a class can hold the very same
    sample from the start, and counting that would report exposure even at
    ``share-ratio = 0``, when nothing was exchanged. Received from anyone,
    not only from ``i``: once a copy of the sample sits on another node it is
    out, whoever sent it. Ids ``i`` itself received are not passed here
    (they are not in others' hands because of ``i``).

    Only copies are seen: a mechanism's fresh (negative) ids match no
    original id, so a noisy image or a class mean exposes nothing by id.

    Parameters
    ----------
    own_ids : numpy.ndarray
        Ids of the node's original samples.
    held_by_others : Iterable[numpy.ndarray]
        The ids each other node received in the exchange (before merging:
        a received sample the receiver already had still counts).

    Returns
    -------
    float
        In ``[0, 1]``; 0 for a node without samples (nothing to expose).
    """
    own = np.unique(_id_array(own_ids))
    if len(own) == 0:
        return 0.0
    arrays = [_id_array(ids) for ids in held_by_others]
    received = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)
    return float(np.isin(own, received).sum() / len(own))


def edge_exposure(own_ids: np.ndarray, sent_ids: np.ndarray) -> float:
    """Fraction of a node's original samples sent over one edge (fresh ids count for nothing)."""
    return exposed_fraction(own_ids, [sent_ids])


def exposure_report(
    own: Mapping[int, np.ndarray],
    sent: Mapping[tuple[int, int], np.ndarray],
) -> tuple[dict[int, float], dict[tuple[int, int], float]]:
    """Per-node and per-edge exposure of a whole exchange.

    Parameters
    ----------
    own : Mapping[int, numpy.ndarray]
        Node -> ids of its original samples.
    sent : Mapping[tuple[int, int], numpy.ndarray]
        Directed edge ``(src, dst)`` -> ids ``src`` sent to ``dst`` (in the
        broadcast mode the same ids for every ``dst``). What node ``j``
        received is the union over the edges into ``j``.

    Returns
    -------
    tuple[dict[int, float], dict[tuple[int, int], float]]
        ``node -> exposed_fraction`` (against what every *other* node
        received) for every node in ``own``, and ``(src, dst) ->
        edge_exposure`` of ``src``'s samples for every edge in ``sent``.
    """
    received: dict[int, list[np.ndarray]] = {}
    for (src, dst), ids in sent.items():
        if src == dst:
            raise ValueError(f"sent: edge ({src}, {dst}) is a self-loop; allowed: edges between two nodes")
        if src not in own:
            raise ValueError(f"sent: edge ({src}, {dst}) starts at node {src}, which has no entry in own")
        received.setdefault(dst, []).append(_id_array(ids))
    per_node = {
        i: exposed_fraction(ids, [arr for j, arrays in received.items() if j != i for arr in arrays])
        for i, ids in own.items()
    }
    per_edge = {(src, dst): edge_exposure(own[src], ids) for (src, dst), ids in sent.items()}
    return per_node, per_edge
