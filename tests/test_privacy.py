"""Divergences and leakage against hand-worked and independently computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flower_dl.privacy import (
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
