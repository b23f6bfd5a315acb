"""Tests for flower_dl.topology.compression against independent numpy references and hand-computed sizes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flower_dl.topology.compressed import (
    COMPRESSORS,
    Compressed,
    check_compression,
    contraction_omega,
    kept_coordinates,
    message_bytes,
    qsgd_bits,
    qsgd_tau,
)
from flower_dl.topology.compression import compress, compress_matrix, decompress


def _vector(P: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(P).astype(np.float32)


# ---------------------------------------------------------------------------
# how many coordinates, how many bytes
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "ratio", "k"),
    [(100, 0.07, 7), (10, 0.1, 1), (10, 0.11, 2), (10, 1.0, 10), (3, 0.01, 1), (7, 0.5, 4), (0, 0.5, 0)],
)
def test_kept_coordinates_is_ceil_of_ratio_times_size(size: int, ratio: float, k: int) -> None:
    assert kept_coordinates(size, ratio) == k


def test_qsgd_bits_is_ceil_log2_of_2s_plus_1() -> None:
    for s in range(1, 300):
        assert qsgd_bits(s) == math.ceil(math.log2(2 * s + 1))
    assert [qsgd_bits(s) for s in (1, 2, 3, 4, 127, 128)] == [2, 3, 3, 4, 8, 9]


def test_nbytes_hand_computed() -> None:
    v = _vector(10)
    rng = np.random.default_rng(0)
    assert compress(v, "none").nbytes == 40  # 10 float32
    assert compress(v, "top-k", ratio=0.25).nbytes == 3 * (4 + 4)  # ceil(2.5) = 3 (index, value) pairs
    assert compress(v, "random-k", ratio=0.25, rng=rng).nbytes == 24
    # qsgd, s = 1: 2 bits x 10 = 20 bits -> 3 bytes, plus the 4-byte norm
    assert compress(v, "qsgd", levels=1, rng=rng).nbytes == 4 + 3
    # s = 4: 4 bits x 10 = 40 bits -> 5 bytes
    assert compress(v, "qsgd", levels=4, rng=rng).nbytes == 4 + 5
    # s = 3: 3 bits x 10 = 30 bits -> 4 bytes
    assert compress(v, "qsgd", levels=3, rng=rng).nbytes == 4 + 4
    assert message_bytes("qsgd", 8, levels=1) == 4 + 2
    assert message_bytes("top-k", 1000, kept=10) == 80


def test_compress_matrix_reports_the_bytes_of_each_row() -> None:
    X = np.random.default_rng(0).standard_normal((5, 40)).astype(np.float32)
    for method in COMPRESSORS:
        _, nbytes = compress_matrix(X, method, ratio=0.1, levels=2, rng=np.random.default_rng(1))
        single = compress(X[0], method, ratio=0.1, levels=2, rng=np.random.default_rng(1)).nbytes
        assert nbytes.dtype == np.int64
        assert nbytes.tolist() == [single] * 5


# ---------------------------------------------------------------------------
# none and top-k
# ---------------------------------------------------------------------------


def test_none_is_identity() -> None:
    v = _vector(33)
    c = compress(v, "none")
    assert np.array_equal(decompress(c), v)
    dense, _ = compress_matrix(np.stack([v, 2 * v]), "none")
    assert np.array_equal(dense, np.stack([v, 2 * v]))


@pytest.mark.parametrize("ratio", [0.01, 0.1, 0.33, 0.5, 0.9])
def test_top_k_keeps_exactly_the_largest_magnitudes(ratio: float) -> None:
    v = _vector(257, seed=3)
    k = math.ceil(ratio * 257)
    c = compress(v, "top-k", ratio=ratio)
    assert len(c.indices) == k and c.indices.dtype == np.int32
    reference = np.sort(np.argsort(-np.abs(v), kind="stable")[:k])
    assert np.array_equal(c.indices, reference)
    assert np.array_equal(c.values, v[reference])
    dense = decompress(c)
    expected = np.zeros_like(v)
    expected[reference] = v[reference]
    assert np.array_equal(dense, expected)


def test_top_k_breaks_ties_towards_the_lower_index() -> None:
    v = np.array([1.0, -3.0, 2.0, 3.0, -2.0, 2.0, 0.0], dtype=np.float32)
    # |v| sorted: 3 (idx 1, 3), 2 (idx 2, 4, 5): k = 4 keeps 1, 3, 2, 4
    c = compress(v, "top-k", ratio=4 / 7)
    assert c.indices.tolist() == [1, 2, 3, 4]
    assert c.indices.tolist() == sorted(np.argsort(-np.abs(v), kind="stable")[:4].tolist())
    dense, _ = compress_matrix(np.stack([v, v[::-1]]), "top-k", ratio=4 / 7)
    assert np.flatnonzero(dense[0]).tolist() == [1, 2, 3, 4]
    assert np.flatnonzero(dense[1]).tolist() == [1, 2, 3, 5]  # v reversed: ties again to the lower index


def test_top_k_ratio_one_is_identity() -> None:
    v = _vector(50)
    assert np.array_equal(decompress(compress(v, "top-k", ratio=1.0)), v)


def test_top_k_matrix_matches_the_stable_sort_reference_per_row() -> None:
    rng = np.random.default_rng(7)
    X = rng.standard_normal((130, 64)).astype(np.float32)  # more than one block of 64 rows
    X[5, :10] = 1.0  # a row full of ties
    dense, _ = compress_matrix(X, "top-k", ratio=0.2)
    k = math.ceil(0.2 * 64)
    for i in range(len(X)):
        keep = np.sort(np.argsort(-np.abs(X[i]), kind="stable")[:k])
        assert np.flatnonzero(dense[i]).tolist() == keep.tolist()
        assert np.array_equal(dense[i, keep], X[i, keep])


# ---------------------------------------------------------------------------
# random-k
# ---------------------------------------------------------------------------


def test_random_k_sends_k_distinct_coordinates_unscaled_and_is_seeded() -> None:
    v = _vector(200, seed=4)
    k = math.ceil(0.15 * 200)
    c = compress(v, "random-k", ratio=0.15, rng=np.random.default_rng(11))
    assert len(c.indices) == k == len(np.unique(c.indices))
    assert c.indices.min() >= 0 and c.indices.max() < 200
    assert np.array_equal(c.values, v[c.indices])  # values as they are: Choco's biased rand_k
    again = compress(v, "random-k", ratio=0.15, rng=np.random.default_rng(11))
    other = compress(v, "random-k", ratio=0.15, rng=np.random.default_rng(12))
    assert np.array_equal(c.indices, again.indices)
    assert not np.array_equal(c.indices, other.indices)


def test_random_k_draws_every_coordinate_equally_often() -> None:
    rng = np.random.default_rng(0)
    counts = np.zeros(10)
    draws = 4000
    for _ in range(draws):
        counts[compress(np.ones(10, dtype=np.float32), "random-k", ratio=0.3, rng=rng).indices] += 1
    p = 0.3
    assert np.all(np.abs(counts - draws * p) < 5 * math.sqrt(draws * p * (1 - p)))


# ---------------------------------------------------------------------------
# qsgd
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("levels", [1, 2, 5])
def test_unscaled_qsgd_is_unbiased(levels: int) -> None:
    v = _vector(12, seed=5)
    draws = 20000
    dense, _ = compress_matrix(
        np.tile(v, (draws, 1)), "qsgd", levels=levels, rng=np.random.default_rng(3), scaled=False
    )
    mean = dense.astype(np.float64).mean(axis=0)
    # q_i = (||v|| / s) sign(v_i) (floor(r_i) + Bernoulli(p_i)): variance (||v|| / s)^2 p_i (1 - p_i)
    norm = float(np.linalg.norm(v.astype(np.float64)))
    r = levels * np.abs(v.astype(np.float64)) / norm
    p = r - np.floor(r)
    std_of_mean = norm / levels * np.sqrt(p * (1 - p) / draws)
    assert np.all(np.abs(mean - v) <= 5 * std_of_mean + 1e-5)


@pytest.mark.parametrize("levels", [1, 3, 8])
def test_qsgd_values_lie_on_the_level_grid(levels: int) -> None:
    v = _vector(300, seed=6)
    rng = np.random.default_rng(1)
    norm = np.float64(np.float32(np.linalg.norm(v.astype(np.float64))))
    for _ in range(20):
        c = compress(v, "qsgd", levels=levels, rng=rng, scaled=False)
        assert c.norm == norm and c.levels == levels
        q = decompress(c).astype(np.float64)
        grid = q * levels / norm  # must be an integer in -s..s
        assert np.allclose(grid, np.round(grid), atol=1e-4)
        assert np.all(np.abs(np.round(grid)) <= levels)
        assert np.all((np.sign(q) == 0) | (np.sign(q) == np.sign(v)))
        # xi is floor(r) or floor(r) + 1
        r = levels * np.abs(v.astype(np.float64)) / norm
        assert np.all((np.abs(c.signed_levels) == np.floor(r)) | (np.abs(c.signed_levels) == np.floor(r) + 1))


def test_scaled_qsgd_is_the_unscaled_one_divided_by_tau() -> None:
    v = _vector(100, seed=8)
    unscaled = decompress(compress(v, "qsgd", levels=4, rng=np.random.default_rng(2), scaled=False))
    scaled = decompress(compress(v, "qsgd", levels=4, rng=np.random.default_rng(2)))
    tau = 1 + min(100 / 4**2, math.sqrt(100) / 4)  # 1 + min(6.25, 2.5) = 3.5
    assert qsgd_tau(100, 4) == tau == 3.5
    assert np.allclose(scaled, unscaled / tau, rtol=1e-6, atol=0)


@pytest.mark.parametrize(("method", "levels"), [("top-k", 1), ("random-k", 1), ("qsgd", 1), ("qsgd", 4)])
def test_default_operators_are_choco_contractions(method: str, levels: int) -> None:
    """E ||Q(v) - v||^2 <= (1 - omega) ||v||^2 (Koloskova et al. 2019, eq. 4), checked on the mean of many draws."""
    P, draws = 50, 4000
    v = _vector(P, seed=9)
    dense, _ = compress_matrix(np.tile(v, (draws, 1)), method, ratio=0.2, levels=levels, rng=np.random.default_rng(4))
    err = ((dense.astype(np.float64) - v) ** 2).sum(axis=1)
    omega = contraction_omega(method, P, ratio=0.2, levels=levels)
    bound = (1 - omega) * float((v.astype(np.float64) ** 2).sum())
    assert err.mean() <= bound * 1.05
    if method == "top-k":
        assert np.all(err <= bound + 1e-6)  # deterministic: holds for every draw


def test_qsgd_of_the_zero_vector_is_zero() -> None:
    zero = np.zeros(17, dtype=np.float32)
    for scaled in (True, False):
        c = compress(zero, "qsgd", levels=3, rng=np.random.default_rng(0), scaled=scaled)
        assert c.norm == 0.0
        out = decompress(c)
        assert np.array_equal(out, zero) and np.all(np.isfinite(out))
    dense, _ = compress_matrix(np.zeros((3, 17), dtype=np.float32), "qsgd", levels=3, rng=np.random.default_rng(0))
    assert np.array_equal(dense, np.zeros((3, 17)))


def test_every_compressor_maps_zero_to_zero() -> None:
    zero = np.zeros(9, dtype=np.float32)
    for method in COMPRESSORS:
        c = compress(zero, method, ratio=0.3, levels=2, rng=np.random.default_rng(0))
        assert np.array_equal(decompress(c), zero)


# ---------------------------------------------------------------------------
# compress_matrix == compress row by row
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", COMPRESSORS)
def test_compress_matrix_equals_compressing_rows_in_order(method: str) -> None:
    X = np.random.default_rng(2).standard_normal((70, 31)).astype(np.float32)  # 70 rows: two blocks
    dense, _ = compress_matrix(X, method, ratio=0.2, levels=3, rng=np.random.default_rng(5))
    rng = np.random.default_rng(5)
    rows = np.stack([decompress(compress(x, method, ratio=0.2, levels=3, rng=rng)) for x in X])
    assert dense.dtype == np.float32 and dense.shape == X.shape
    assert np.array_equal(dense, rows)


def test_compressed_holds_small_integers_for_qsgd() -> None:
    c = compress(_vector(20), "qsgd", levels=5, rng=np.random.default_rng(0))
    assert isinstance(c, Compressed)
    assert c.signed_levels.dtype == np.int8 and c.indices is None
    assert compress(_vector(20), "qsgd", levels=1000, rng=np.random.default_rng(0)).signed_levels.dtype == np.int16


# ---------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "ratio", "levels", "message"),
    [
        ("foo", 0.1, 4, "compression: 'foo' is not a known compressor; allowed: none, top-k, random-k, qsgd"),
        (None, 0.1, 4, "compression: None is not a known compressor"),
        ("top-k", 0, 4, "compression-ratio: 0 is outside (0, 1]"),
        ("top-k", 1.5, 4, "compression-ratio: 1.5 is outside (0, 1]"),
        ("top-k", -0.1, 4, "compression-ratio: -0.1 is outside (0, 1]"),
        ("top-k", float("nan"), 4, "compression-ratio: nan is outside (0, 1]"),
        ("top-k", "0.1", 4, "compression-ratio: '0.1' is not a number"),
        ("top-k", True, 4, "compression-ratio: True is not a number"),
        ("qsgd", 0.1, -1, "qsgd-levels: -1 must be an integer >= 1"),
        ("qsgd", 0.1, 0, "qsgd-levels: 0 must be an integer >= 1"),
        ("qsgd", 0.1, 2.5, "qsgd-levels: 2.5 must be an integer >= 1"),
        ("qsgd", 0.1, 2**31, "qsgd-levels: 2147483648 is too large"),
    ],
)
def test_check_compression_names_key_value_and_allowed(
    method: object, ratio: object, levels: object, message: str
) -> None:
    with pytest.raises(ValueError) as info:
        check_compression(method, ratio, levels)
    assert str(info.value).startswith(message)


def test_check_compression_accepts_good_values() -> None:
    for method in COMPRESSORS:
        check_compression(method, 1, 1)
        check_compression(method, 0.01, 16)
        check_compression(method, np.float32(0.5), np.int64(2))


def test_compress_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="qsgd-levels: 0 must be an integer >= 1"):
        compress(_vector(5), "qsgd", levels=0, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"compression-ratio: 0 is outside \(0, 1\]"):
        compress(_vector(5), "top-k", ratio=0)
    with pytest.raises(ValueError, match=r"shape \(P,\)"):
        compress(np.zeros((2, 3)), "none")
    with pytest.raises(ValueError, match="pass rng"):
        compress(_vector(5), "random-k", ratio=0.5)
    with pytest.raises(ValueError, match="pass rng"):
        compress_matrix(np.zeros((2, 3)), "qsgd")
    with pytest.raises(ValueError, match=r"shape \(n, P\)"):
        compress_matrix(np.zeros(3), "none")
