"""Membership inference: what a node's trained model reveals about its samples.

The loss-threshold attack of Yeom et al. ("Privacy Risk in Machine Learning:
Analyzing the Connection to Overfitting", CSF 2018) predicts that a sample was
in the training set when the model's loss on it is below a threshold ``t``.
Sweeping ``t`` traces a ROC curve; we report its area (:func:`attack_auc`)
and, following Carlini et al. ("Membership Inference Attacks From First
Principles", S&P 2022), its true-positive rate at a low false-positive rate
(:func:`tpr_at_fpr`), which says whether the attack can pick out *some*
members with confidence rather than how it does on average. RMIA
(:func:`rmia_scores`) is the stronger attack that compares the model with
reference models; :func:`score_metrics` reports any attack's scores the same way.

The samples the attacks are run on, and the ``mia-*`` keys' checks, are in
:mod:`flower_dl.privacy.attack_data`; what the exchange itself revealed
(exposure, by sample id) is in :mod:`flower_dl.privacy.exposure`.

Everything here is pure numpy/scipy: the node computes losses, the
functions below turn them into numbers.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = [
    "RMIA_OFFLINE_A",
    "attack_auc",
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
