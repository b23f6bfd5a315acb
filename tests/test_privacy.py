"""Divergences and leakage against hand-worked and independently computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flower_dl.privacy import leakage as privacy
from flower_dl.privacy.leakage import (
    SMOOTHING,
    intensity_distribution,
    js_divergence,
    kl_divergence,
    label_distribution,
    leakage,
)


def test_kl_matches_hand_computation() -> None:
    p = np.array([0.5, 0.5, 0.0])
    q = np.array([0.25, 0.25, 0.5])
    e = SMOOTHING
    expected = sum((a + e) * math.log((a + e) / (b + e)) for a, b in zip(p, q))
    assert kl_divergence(p, q) == pytest.approx(expected, rel=1e-12)
    # without the smoothing term it is log 2 = 0.6931...
    assert kl_divergence(p, q, smoothing=0.0) == pytest.approx(math.log(2), rel=1e-12)
    assert kl_divergence(q, q) == pytest.approx(0.0, abs=1e-15)


def test_js_matches_hand_computation() -> None:
    p = np.array([1.0, 0.0])
    q = np.array([0.0, 1.0])
    assert js_divergence(p, q) == pytest.approx(1.0)  # disjoint supports: 1 bit
    p = np.array([0.5, 0.5, 0.0])
    q = np.array([0.25, 0.25, 0.5])
    m = (p + q) / 2
    kl = lambda a, b: sum(x * math.log2(x / y) for x, y in zip(a, b) if x > 0)  # noqa: E731
    assert js_divergence(p, q) == pytest.approx(0.5 * kl(p, m) + 0.5 * kl(q, m), rel=1e-9)
    assert js_divergence(p, q) == pytest.approx(js_divergence(q, p))


def test_intensity_distribution_is_normalised_pixel_sum() -> None:
    images = np.zeros((2, 2, 2), dtype=np.uint8)
    images[0, 0, 0] = 100
    images[1, 0, 0] = 100
    images[1, 1, 1] = 200
    expected = np.array([[0.5, 0.0], [0.0, 0.5]])
    assert np.allclose(intensity_distribution(images), expected)
    assert np.allclose(intensity_distribution(images[:, None]), expected)  # (n, 1, H, W)
    assert not intensity_distribution(images[:0]).any()


def test_label_distribution() -> None:
    assert label_distribution([0, 0, 1, 9]).tolist() == [0.5, 0.25] + [0.0] * 7 + [0.25]


def test_leakage_is_share_ratio_times_sum_over_neighbours() -> None:
    p0 = np.array([0.5, 0.5, 0.0])
    q1 = np.array([0.25, 0.25, 0.5])
    q2 = np.array([0.0, 0.5, 0.5])
    sent = {(0, 1): p0, (0, 2): p0, (1, 0): q1}
    exchanged = {0: p0, 1: q1, 2: q2}
    got = leakage(0.2, sent, exchanged)
    assert got[0] == pytest.approx(0.2 * (kl_divergence(p0, q1) + kl_divergence(p0, q2)))
    assert got[1] == pytest.approx(0.2 * kl_divergence(q1, p0))
    assert leakage(0.0, sent, exchanged) == {0: 0.0, 1: 0.0}
    # a node that sent nothing (empty map) leaks nothing
    assert leakage(0.2, {(0, 1): np.zeros(3)}, exchanged) == {0: 0.0}


def _summary(exchanged: float, sent: dict[int, float] | None, new_from: dict[int, int]) -> privacy.NodeSummary:
    """A node's summary on 2-pixel 'images': maps are [x, 1 - x]."""

    def m(x: float) -> np.ndarray:
        return np.array([x, 1 - x])

    sent = sent or {}
    return privacy.NodeSummary(
        original_intensity=m(0.5), original_labels=m(0.5), exchanged_intensity=m(exchanged),
        exchanged_labels=m(exchanged), sent_intensity={k: m(v) for k, v in sent.items()},
        sent_labels={k: m(v) for k, v in sent.items()}, num_train_examples=10, new_from=new_from,
    )  # fmt: skip


def test_exchange_report_on_a_hand_worked_line() -> None:
    """Line 0 - 1 - 2, broadcast; node 2 failed in the exchange."""
    from scipy.special import rel_entr

    neighbours = {0: [1], 1: [0, 2], 2: [1]}
    summaries = {0: _summary(0.3, {-1: 0.9}, {1: 4}), 1: _summary(0.6, {-1: 0.2}, {0: 5})}
    sizes = {(0, 1): (5, 500), (1, 0): (4, 400), (1, 2): (4, 400)}
    report = privacy.exchange_report(0.5, neighbours, summaries, sizes, failed={2: "boom"})

    def kl(p, q):  # the study's smoothing, computed independently
        return float(rel_entr(np.array([p, 1 - p]) + 1e-5, np.array([q, 1 - q]) + 1e-5).sum())

    rows = {(e["src"], e["dst"]): e for e in report.edges}
    assert sorted(rows) == [(0, 1), (1, 0), (1, 2), (2, 1)]
    assert rows[(0, 1)]["kl-sent-vs-exchanged"] == pytest.approx(kl(0.9, 0.6))
    assert rows[(0, 1)]["new-samples"] == 5 and rows[(0, 1)]["bytes-sent"] == 500
    assert "kl-sent-vs-exchanged" not in rows[(1, 2)]  # the receiver failed: nothing to compare with
    assert rows[(1, 2)]["failed"] == 1 and rows[(1, 2)]["failure"] == "node 2 failed in the exchange"
    assert rows[(0, 1)]["failed"] == 0 and rows[(0, 1)]["failure"] == ""
    assert rows[(2, 1)]["samples-sent"] == 0 and "new-samples" in rows[(2, 1)]
    assert report.leakage[0] == pytest.approx(0.5 * kl(0.9, 0.6))
    assert report.leakage[1] == pytest.approx(0.5 * kl(0.2, 0.3))  # only the edge to node 0 counts
    assert np.isnan(report.leakage[2])
    assert sorted(report.maps) == [0, 1] and np.allclose(report.maps[1]["transmitted"], [0.2, 0.8])
