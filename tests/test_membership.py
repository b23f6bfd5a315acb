"""Membership inference (loss-threshold attack) and exposure, checked against counts worked out by hand."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest

from flower_dl.privacy.attack_data import attack_samples, check_mia_samples
from flower_dl.privacy.exposure import edge_exposure, exposed_fraction, exposure_report
from flower_dl.privacy.mechanisms import fresh_ids
from flower_dl.privacy.membership import attack_auc, tpr_at_fpr


def pairwise_auc(members, nonmembers) -> float:
    """The definition, O(n*m): P(member loss < non-member loss) + 0.5 P(equal)."""
    wins = sum((a < b) + 0.5 * (a == b) for a, b in itertools.product(members, nonmembers))
    return wins / (len(members) * len(nonmembers))


def brute_tpr(members, nonmembers, fpr) -> float:
    """Every threshold (the empty one and each loss), member iff loss <= t; best TPR with FPR <= fpr."""
    members, nonmembers = np.asarray(members), np.asarray(nonmembers)
    best = 0.0  # t = -inf: nothing predicted a member
    for t in np.unique(np.concatenate([members, nonmembers])):
        if np.mean(nonmembers <= t) <= fpr:
            best = max(best, float(np.mean(members <= t)))
    return best


# ------------------------------------------------------------------------ AUC
def test_auc_hand_worked_with_ties():
    members, nonmembers = [0.1, 0.2, 0.2, 0.5], [0.2, 0.3, 0.05]
    # 0.1 beats 0.2 and 0.3 (2); each 0.2 ties 0.2 and beats 0.3 (1.5 + 1.5); 0.5 beats none: 5 of 12 pairs.
    assert attack_auc(members, nonmembers) == pytest.approx(5 / 12)
    assert attack_auc(members, nonmembers) == pytest.approx(pairwise_auc(members, nonmembers))


def test_auc_matches_pairwise_count_on_tied_integers():
    rng = np.random.default_rng(0)
    for _ in range(20):
        members = rng.integers(0, 5, size=rng.integers(1, 12)).astype(float)
        nonmembers = rng.integers(0, 5, size=rng.integers(1, 12)).astype(float)
        assert attack_auc(members, nonmembers) == pytest.approx(pairwise_auc(members, nonmembers))


def test_auc_separated_reversed_and_chance():
    assert attack_auc([0.1, 0.2, 0.3], [0.4, 0.5]) == 1.0
    assert attack_auc([0.4, 0.5], [0.1, 0.2, 0.3]) == 0.0
    assert attack_auc([0.3, 0.3], [0.3]) == 0.5
    rng = np.random.default_rng(1)
    n = m = 2000
    auc = attack_auc(rng.normal(size=n), rng.normal(size=m))
    se = np.sqrt((n + m + 1) / (12 * n * m))  # the null standard error of U / (n m)
    assert abs(auc - 0.5) < 4 * se


def test_auc_empty_and_nan():
    assert np.isnan(attack_auc([], [0.1]))
    assert np.isnan(attack_auc([0.1], []))
    with pytest.raises(ValueError, match="member_losses: contains NaN"):
        attack_auc([0.1, np.nan], [0.2])


# ----------------------------------------------------------------- TPR @ FPR
def test_tpr_at_fpr_hand_worked():
    members = [0.1, 0.2, 0.3, 2.0]
    # 100 non-members, 1% FPR lets exactly one in: the 0.15. Threshold 0.3 takes 3 of 4 members.
    nonmembers = [0.15] + [1.0] * 99
    assert tpr_at_fpr(members, nonmembers, fpr=0.01) == 0.75
    # Two non-members tied at 0.2: a threshold at 0.2 takes both (FPR 2%), so only t = 0.1 is allowed.
    tied = [0.2, 0.2] + [1.0] * 98
    assert tpr_at_fpr(members, tied, fpr=0.01) == 0.25
    assert tpr_at_fpr(members, tied, fpr=0.02) == 0.75  # now the tie fits; the member at 0.2 comes in too
    assert tpr_at_fpr(members, nonmembers, fpr=0.0) == 0.25  # only members below every non-member
    assert tpr_at_fpr(members, nonmembers, fpr=1.0) == 1.0


def test_tpr_at_fpr_empty_threshold_point():
    # Two non-members tie below every member: any threshold taking a member in has FPR >= 2%,
    # so only the empty threshold (TPR 0 at FPR 0) is allowed at 1%.
    assert tpr_at_fpr([0.5, 0.6], [0.1, 0.1] + [1.0] * 98, fpr=0.01) == 0.0
    assert tpr_at_fpr([0.5, 0.6], [0.1, 0.1] + [1.0] * 98, fpr=0.02) == 1.0


def test_tpr_at_fpr_matches_brute_force():
    rng = np.random.default_rng(2)
    for _ in range(30):
        members = rng.integers(0, 8, size=rng.integers(1, 30)).astype(float)
        nonmembers = rng.integers(2, 10, size=rng.integers(1, 30)).astype(float)
        for fpr in (0.0, 0.01, 0.05, 0.1, 1 / 3, 0.5, 1.0):
            assert tpr_at_fpr(members, nonmembers, fpr) == pytest.approx(brute_tpr(members, nonmembers, fpr))


def test_tpr_at_fpr_errors_and_empty():
    assert np.isnan(tpr_at_fpr([], [0.1]))
    with pytest.raises(ValueError, match=re.escape("fpr: 1.5 is out of range; allowed: a number in [0, 1]")):
        tpr_at_fpr([0.1], [0.2], fpr=1.5)


# ------------------------------------------------------------ attack samples
def node_data(per_class: int = 200, test_per_class: int = 30):
    """A node holding classes 3 and 7 (ids 1000...), and a 10-class test set."""
    train_labels = np.repeat([3, 7], per_class).astype(np.int64)
    train_ids = np.arange(1000, 1000 + len(train_labels), dtype=np.int64)
    test_labels = np.tile(np.arange(10, dtype=np.int64), test_per_class)
    return train_ids, train_labels, test_labels


def test_attack_samples_reproducible_and_class_matched():
    train_ids, train_labels, test_labels = node_data()
    members, nonmembers = attack_samples(train_ids, train_labels, test_labels, 50, seed=7, node=0)
    again = attack_samples(train_ids, train_labels, test_labels, 50, seed=7, node=0)
    assert np.array_equal(members, again[0]) and np.array_equal(nonmembers, again[1])
    assert members.dtype == nonmembers.dtype == np.int64
    assert len(np.unique(members)) == len(np.unique(nonmembers)) == 50
    assert np.isin(members, train_ids).all()
    member_labels = train_labels[np.searchsorted(train_ids, members)]
    assert np.array_equal(np.bincount(member_labels, minlength=10), np.bincount(test_labels[nonmembers], minlength=10))
    other_seed = attack_samples(train_ids, train_labels, test_labels, 50, seed=8, node=0)
    other_node = attack_samples(train_ids, train_labels, test_labels, 50, seed=7, node=1)
    assert not np.array_equal(members, other_seed[0])
    assert not np.array_equal(members, other_node[0])


def test_attack_samples_fill_from_other_classes_when_a_class_runs_out():
    train_ids, train_labels, _ = node_data()
    test_labels = np.array([3] * 5 + [7] * 100 + [1] * 100, dtype=np.int64)  # 5 test samples of class 3
    members, nonmembers = attack_samples(train_ids, train_labels, test_labels, 60, seed=0, node=0)
    assert len(nonmembers) == len(np.unique(nonmembers)) == 60
    assert (train_labels[np.searchsorted(train_ids, members)] == 3).sum() > 5  # class 3 does run out
    counts = np.bincount(test_labels[nonmembers], minlength=10)
    assert counts[3] == 5 and counts[7] == 55 and counts[1] == 0  # filled from the node's other class only


def test_attack_samples_errors_and_zero():
    train_labels = np.repeat([3, 7], 200).astype(np.int64)
    train_ids = np.arange(400, dtype=np.int64)
    test_labels = np.tile(np.arange(10, dtype=np.int64), 100)  # 100 of each class: 200 of the node's
    message = (
        "mia-samples: 500 is more than node 3 can supply "
        "(it holds 400 training samples / 200 test samples of its classes); allowed: at most 200, or 0 to switch "
        "the attack off"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        attack_samples(train_ids, train_labels, test_labels, 500, seed=0, node=3)
    with pytest.raises(ValueError, match="mia-samples: 300 is more than node 3"):  # enough train, too few test
        attack_samples(train_ids, train_labels, test_labels, 300, seed=0, node=3)
    members, nonmembers = attack_samples(train_ids, train_labels, test_labels, 0, seed=0, node=3)
    assert members.shape == nonmembers.shape == (0,) and members.dtype == np.int64


def test_check_mia_samples():
    assert check_mia_samples(0) == 0 and check_mia_samples(np.int64(5)) == 5
    for bad in (-1, 2.5, True, "3"):
        with pytest.raises(ValueError, match=re.escape(f"mia-samples: {bad!r} must be an integer >= 0")):
            check_mia_samples(bad)


# ------------------------------------------------------------------- exposure
def test_exposure_on_a_three_node_line():
    # Line 0 - 1 - 2. Node 1 also holds sample 2 of node 0 from the start (an overlapping partition).
    own = {
        0: np.array([0, 1, 2, 3]),
        1: np.array([10, 11, 12, 13, 2]),
        2: np.array([20, 21, 22, 23]),
    }
    made = fresh_ids(2, 1)  # node 2 sends one mixup/noisy item: not a copy of anything
    sent = {
        (0, 1): np.array([0, 1]),
        (1, 0): np.array([10]),
        (1, 2): np.array([11, 2]),  # node 1's copy of sample 2 reaches node 2: node 0's sample 2 is out too
        (2, 1): np.concatenate([[20], made]),
    }
    # Received: node 0 {10}; node 1 {0, 1, 20, made}; node 2 {11, 2}.
    per_node, per_edge = exposure_report(own, sent)
    assert per_node == pytest.approx({0: 3 / 4, 1: 3 / 5, 2: 1 / 4})  # {0,1,2}; {10,11,2}; {20}
    assert per_edge == pytest.approx({(0, 1): 2 / 4, (1, 0): 1 / 5, (1, 2): 2 / 5, (2, 1): 1 / 4})


def test_overlap_without_exchange_is_not_exposure():
    own = {0: np.array([0, 1, 2]), 1: np.array([2, 3])}  # both hold sample 2 from the start
    per_node, per_edge = exposure_report(own, {(0, 1): np.array([], dtype=np.int64)})
    assert per_node == {0: 0.0, 1: 0.0} and per_edge == {(0, 1): 0.0}


def test_exposed_fraction_direct():
    own = np.array([5, 6, 7, 8])
    assert exposed_fraction(own, []) == 0.0
    assert exposed_fraction(own, [np.array([5, 5, 99]), np.array([8])]) == 0.5  # a repeat counts once
    assert exposed_fraction(np.array([], dtype=np.int64), [np.array([1])]) == 0.0
    assert edge_exposure(own, fresh_ids(0, 4)) == 0.0  # made items are not copies


def test_exposure_report_errors():
    with pytest.raises(ValueError, match=re.escape("sent: edge (1, 1) is a self-loop")):
        exposure_report({1: np.array([0])}, {(1, 1): np.array([0])})
    with pytest.raises(ValueError, match="starts at node 4, which has no entry in own"):
        exposure_report({1: np.array([0])}, {(4, 1): np.array([0])})
