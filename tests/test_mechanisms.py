"""Exchange mechanisms (raw, noise, mixup), fresh ids and the nearest-neighbour distance."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest

from flower_dl.privacy.mechanisms import (
    MAX_NODES,
    MECHANISMS,
    apply_mechanism,
    check_mechanism,
    check_mixup_size,
    decode_fresh,
    fresh_ids,
    is_fresh,
    nn_distance,
)


def node_samples(seed: int = 0, per_class: tuple[int, ...] = (5, 4), size: int = 4):
    """A node's own data: random uint8 ``size x size`` images of classes 0, 1, ...; ids 100, 101, ..."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(per_class)), per_class).astype(np.int64)
    images = rng.integers(0, 256, size=(len(labels), size, size), dtype=np.uint8)
    ids = np.arange(100, 100 + len(labels), dtype=np.int64)
    return images, labels, ids


def send(mechanism: str, seed: int = 0, **kwargs):
    images, labels, ids = node_samples()
    picked = np.array([0, 2, 5, 3, 7])  # classes 0, 0, 1, 0, 1
    kwargs.setdefault("own_images", images)
    kwargs.setdefault("own_labels", labels)
    out = apply_mechanism(
        mechanism, images[picked], labels[picked], ids[picked], node=3, rng=np.random.default_rng(seed), **kwargs
    )
    return (images, labels, ids, picked), out


# ------------------------------------------------------------------- raw/noise
def test_raw_sends_the_samples():
    (images, labels, ids, picked), (out_images, out_labels, out_ids) = send("raw")
    assert np.array_equal(out_images, images[picked])
    assert np.array_equal(out_labels, labels[picked]) and np.array_equal(out_ids, ids[picked])
    assert nn_distance(out_images, images) == 0.0


def test_noise_with_zero_std_equals_raw():
    _, raw = send("raw")
    _, noisy = send("noise", noise_std=0.0)
    for a, b in zip(raw, noisy, strict=True):
        assert np.array_equal(a, b) and a.dtype == b.dtype


def test_noise_changes_images_keeps_labels_gives_fresh_ids():
    (images, labels, ids, picked), (out_images, out_labels, out_ids) = send("noise", noise_std=0.2)
    assert not np.isin(out_ids, ids).any()
    assert out_images.dtype == np.uint8 and out_images.shape == images[picked].shape
    assert not np.array_equal(out_images, images[picked])
    assert np.array_equal(out_labels, labels[picked])
    assert is_fresh(out_ids).all() and len(np.unique(out_ids)) == len(out_ids)
    assert (decode_fresh(out_ids)[0] == 3).all()
    assert nn_distance(out_images, images) > 0
    _, again = send("noise", noise_std=0.2)
    assert np.array_equal(out_images, again[0])  # same seed, same noise


def test_noise_is_on_the_unit_pixel_scale_and_clipped():
    gray = np.full((50, 28, 28), 128, dtype=np.uint8)
    ids = np.arange(50, dtype=np.int64)
    labels = np.zeros(50, dtype=np.int64)
    out, _, _ = apply_mechanism("noise", gray, labels, ids, node=0, rng=np.random.default_rng(0), noise_std=0.05)
    delta = (out.astype(np.float64) - 128) / 255
    assert abs(delta.mean()) < 0.002 and delta.std() == pytest.approx(0.05, rel=0.02)
    loud, _, _ = apply_mechanism("noise", gray, labels, ids, node=0, rng=np.random.default_rng(0), noise_std=10.0)
    assert np.isin(loud, [0, 255]).mean() > 0.9  # clipped to the valid range, not wrapped


# ---------------------------------------------------------------------- mixup
def test_mixup_size_one_sends_real_images_with_fresh_ids():
    (images, labels, ids, picked), (out_images, out_labels, out_ids) = send("mixup", mixup_size=1)
    assert np.array_equal(out_labels, labels[picked])
    assert is_fresh(out_ids).all() and not np.isin(out_ids, ids).any()
    assert nn_distance(out_images, images) == 0.0
    for item, c in zip(out_images, out_labels, strict=True):  # each a real image of its own class
        assert any(np.array_equal(item, img) for img in images[labels == c])


def test_every_mixup_item_is_a_same_class_mean_of_its_sender():
    (images, labels, _, picked), (out_images, out_labels, _) = send("mixup", mixup_size=2)
    assert np.array_equal(out_labels, labels[picked])

    def means(cls: int) -> list[np.ndarray]:
        pool = images[labels == cls].astype(np.float64)
        return [np.rint(pool[list(pair)].mean(axis=0)) for pair in itertools.combinations(range(len(pool)), 2)]

    for item, c in zip(out_images, out_labels, strict=True):
        assert any(np.array_equal(item, m) for m in means(c))  # two *distinct* images of class c
        assert not any(np.array_equal(item, m) for m in means(1 - c))
    assert nn_distance(out_images, images) > 0


def test_mixup_of_a_whole_class_is_its_mean():
    (images, labels, _, _), (out_images, out_labels, _) = send("mixup", mixup_size=4)  # class 1 has 4 images
    expected = np.rint(images[labels == 1].mean(axis=0, dtype=np.float64))
    for item in out_images[out_labels == 1]:
        assert np.array_equal(item, expected)


def test_mixup_errors():
    with pytest.raises(ValueError, match="needs the node's own images"):
        send("mixup", own_images=None)
    message = "mixup-size: 5 is larger than node 3's smallest class (4 samples of class 1)"
    with pytest.raises(ValueError, match=re.escape(message)):
        send("mixup", mixup_size=5)
    images, labels, ids = node_samples()
    with pytest.raises(ValueError, match="class 1 is not among node 0's own samples"):
        apply_mechanism(
            "mixup",
            images[:2],
            np.array([0, 1]),
            ids[:2],
            node=0,
            rng=np.random.default_rng(0),
            own_images=images[labels == 0],
            own_labels=labels[labels == 0],
        )


def test_empty_share():
    images, labels, ids = node_samples()
    for mechanism in MECHANISMS:
        out = apply_mechanism(
            mechanism,
            images[:0],
            labels[:0],
            ids[:0],
            node=1,
            rng=np.random.default_rng(0),
            noise_std=0.1,
            own_images=images,
            own_labels=labels,
        )
        assert [len(a) for a in out] == [0, 0, 0]
        assert np.isnan(nn_distance(out[0], images))


# ------------------------------------------------------------------ fresh ids
def test_fresh_ids_never_collide():
    a, b = fresh_ids(0, 1000), fresh_ids(1, 1000)
    real = np.arange(0, 70_000, dtype=np.int64)
    assert a.dtype == b.dtype == np.int64
    assert len(np.unique(np.concatenate([a, b]))) == 2000
    assert not np.isin(a, real).any() and not np.isin(b, real).any()
    assert is_fresh(a).all() and not is_fresh(real).any()
    assert a[0] == -1 and b[0] == -(1 + 2**40)
    later = fresh_ids(0, 1000, round_=1)
    more = fresh_ids(0, 1000, start=1000)
    assert len(np.unique(np.concatenate([a, later, more]))) == 3000


def test_fresh_ids_decode_and_extremes():
    node, round_, k = decode_fresh(fresh_ids(5, 3, round_=2, start=7))
    assert node.tolist() == [5] * 3 and round_.tolist() == [2] * 3 and k.tolist() == [7, 8, 9]
    last = fresh_ids(MAX_NODES - 1, 1, round_=2**16 - 1, start=2**24 - 1)
    assert last[0] == np.iinfo(np.int64).min
    assert [x.item() for x in decode_fresh(last)] == [MAX_NODES - 1, 2**16 - 1, 2**24 - 1]
    with pytest.raises(ValueError, match="out of range for fresh ids"):
        fresh_ids(MAX_NODES, 1)
    with pytest.raises(ValueError, match="at most 16777216 items per node and round"):
        fresh_ids(0, 2, start=2**24 - 1)
    with pytest.raises(ValueError, match="not all fresh"):
        decode_fresh(np.array([3]))


# ----------------------------------------------------------------- nn distance
def test_nn_distance_hand_checked():
    own = np.array([[[0, 0]], [[255, 255]], [[0, 255]]], dtype=np.uint8)  # three 1x2 images
    # [51, 51]: nearest [0, 0], rms 51/255 = 0.2.  [255, 0]: [0, 0] and [255, 255] both at sqrt(1/2).
    # [0, 204]: nearest [0, 255], rms sqrt(51^2 / 2) / 255 = 0.2 / sqrt(2).
    sent = np.array([[[51, 51]], [[255, 0]], [[0, 204]]], dtype=np.uint8)
    assert nn_distance(sent, own) == pytest.approx((0.2 + np.sqrt(0.5) + 0.2 / np.sqrt(2)) / 3)
    assert nn_distance(own, own) == 0.0


def test_nn_distance_matches_brute_force_in_small_chunks():
    rng = np.random.default_rng(3)
    own = rng.integers(0, 256, size=(300, 28, 28), dtype=np.uint8)
    sent = np.concatenate([own[:20], rng.integers(0, 256, size=(30, 28, 28), dtype=np.uint8)])
    a, b = sent.reshape(len(sent), -1) / 255.0, own.reshape(len(own), -1) / 255.0
    brute = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).mean(axis=2)).min(axis=1).mean()
    assert nn_distance(sent, own, chunk_elements=1000) == pytest.approx(brute, rel=1e-12)
    assert nn_distance(sent[:20], own, chunk_elements=1000) == 0.0
    floats = rng.normal(100, 30, size=(40, 28, 28))  # not integers: the exact recomputation still gives 0
    assert nn_distance(floats[:10], floats) == 0.0


def test_nn_distance_errors():
    with pytest.raises(ValueError, match="differ in size: 4 vs 9 pixels"):
        nn_distance(np.zeros((1, 2, 2)), np.zeros((1, 3, 3)))
    with pytest.raises(ValueError, match="own_images: empty"):
        nn_distance(np.zeros((1, 2, 2)), np.zeros((0, 2, 2)))


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("foo", 0.0, 1), "exchange-mechanism: 'foo' is not a known mechanism; allowed: raw, noise, mixup"),
        (("noise", -0.1, 1), "exchange-noise: -0.1 must be >= 0"),
        (("noise", float("nan"), 1), "exchange-noise: nan must be a finite number >= 0"),
        (("mixup", 0.0, 0), "mixup-size: 0 must be an integer >= 1"),
        (("mixup", 0.0, 2.0), "mixup-size: 2.0 must be an integer >= 1"),
        (("raw", 0.0, True), "mixup-size: True must be an integer >= 1"),
    ],
)
def test_check_mechanism_errors(args, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        check_mechanism(*args)


def test_check_mechanism_accepts():
    for mechanism in MECHANISMS:
        check_mechanism(mechanism, 0.0, 1)
    check_mechanism("noise", np.float64(0.3), np.int64(8))


def test_check_mixup_size():
    labels = np.array([3] * 500 + [7] * 400 + [1] * 450)
    check_mixup_size(400, 2, labels)
    message = "mixup-size: 600 is larger than node 2's smallest class (400 samples of class 7)"
    with pytest.raises(ValueError, match=re.escape(message)):
        check_mixup_size(600, 2, labels)
    check_mixup_size(600, 2, np.array([], dtype=np.int64))  # no data: nothing to average, nothing sent
