"""Tests for flower_dl.exchange.crypto: end-to-end encryption of exchanged samples."""

from __future__ import annotations

import numpy as np
import pytest

from flower_dl.exchange.crypto import (
    OVERHEAD,
    DecryptionError,
    KeyPair,
    decrypt,
    edge_key,
    encrypt,
    open_samples,
    seal_samples,
)
from flower_dl.exchange.packing import pack_samples, unpack_samples


@pytest.fixture(scope="module")
def keys() -> dict[int, KeyPair]:
    return {node: KeyPair.generate() for node in range(4)}


def _samples(n: int, seed: int = 0, shape: tuple[int, int] = (28, 28)):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 60_000, size=n, dtype=np.int64)
    images = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.int64)
    return ids, images, labels


def _assert_same(got, want) -> None:
    for g, w in zip(got, want):
        assert g.dtype == w.dtype
        assert g.shape == w.shape
        np.testing.assert_array_equal(g, w)


# --------------------------------------------------------------------- KeyPair


def test_keypair_generate_and_rebuild() -> None:
    kp = KeyPair.generate()
    assert len(kp.private_bytes) == 32 and len(kp.public_bytes) == 32
    assert KeyPair.from_private_bytes(kp.private_bytes) == kp
    assert KeyPair.generate().public_bytes != kp.public_bytes
    assert kp.private_bytes.hex() not in repr(kp)


def test_keypair_validation() -> None:
    kp = KeyPair.generate()
    with pytest.raises(ValueError):
        KeyPair.from_private_bytes(b"\x01" * 31)
    with pytest.raises(ValueError):
        KeyPair(private_bytes=kp.private_bytes, public_bytes=KeyPair.generate().public_bytes)
    with pytest.raises(TypeError):
        KeyPair.from_private_bytes("x" * 32)  # type: ignore[arg-type]


# -------------------------------------------------------------------- edge_key


def test_edge_key_symmetric_and_separated(keys: dict[int, KeyPair]) -> None:
    i, j, k = keys[0], keys[1], keys[2]
    k_ij_at_i = edge_key(i, j.public_bytes, 0, 1)
    k_ij_at_j = edge_key(j, i.public_bytes, 0, 1)
    assert len(k_ij_at_i) == 32
    assert k_ij_at_i == k_ij_at_j
    # Other direction: also symmetric, but a different key.
    k_ji = edge_key(j, i.public_bytes, 1, 0)
    assert k_ji == edge_key(i, j.public_bytes, 1, 0)
    assert k_ji != k_ij_at_i
    # Contexts separate keys.
    k_run_a = edge_key(i, j.public_bytes, 0, 1, context=b"run-a")
    assert k_run_a == edge_key(j, i.public_bytes, 0, 1, context=b"run-a")
    assert k_run_a != k_ij_at_i
    assert k_run_a != edge_key(i, j.public_bytes, 0, 1, context=b"run-b")
    # A third party with both public keys gets a different key.
    assert edge_key(k, j.public_bytes, 0, 1) != k_ij_at_i
    assert edge_key(k, i.public_bytes, 0, 1) != k_ij_at_i
    # Label is unambiguous: 1->23 vs 12->3.
    assert edge_key(i, j.public_bytes, 1, 23) != edge_key(i, j.public_bytes, 12, 3)


def test_edge_key_rejects_bad_public_key(keys: dict[int, KeyPair]) -> None:
    with pytest.raises(ValueError):
        edge_key(keys[0], b"\x00" * 31, 0, 1)
    with pytest.raises(ValueError):  # low-order point -> all-zero shared secret
        edge_key(keys[0], b"\x00" * 32, 0, 1)


# ---------------------------------------------------------------- pack/unpack


@pytest.mark.parametrize("n", [0, 1, 7])
def test_pack_unpack_round_trip(n: int) -> None:
    samples = _samples(n, seed=n)
    data = pack_samples(*samples)
    assert isinstance(data, bytes)
    out = unpack_samples(data)
    _assert_same(out, samples)
    assert out[1].flags.writeable


def test_pack_other_image_shapes_and_dtypes() -> None:
    ids = np.arange(3, dtype=np.int32)
    images = np.arange(3 * 4 * 5 * 3, dtype=np.int64).reshape(3, 4, 5, 3) % 256
    labels = np.array([1, 2, 3], dtype=np.uint8)
    o_ids, o_images, o_labels = unpack_samples(pack_samples(ids, images, labels))
    assert o_ids.dtype == np.int64 and o_labels.dtype == np.int64 and o_images.dtype == np.uint8
    np.testing.assert_array_equal(o_ids, ids)
    np.testing.assert_array_equal(o_images, images)
    np.testing.assert_array_equal(o_labels, labels)
    # Empty batch keeps its image shape.
    _, e_images, _ = unpack_samples(
        pack_samples(np.zeros(0, np.int64), np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.int64))
    )
    assert e_images.shape == (0, 28, 28) and e_images.dtype == np.uint8


def test_pack_rejects_bad_input() -> None:
    ids, images, labels = _samples(3)
    with pytest.raises(ValueError):
        pack_samples(ids[:2], images, labels)
    with pytest.raises(ValueError):
        pack_samples(ids, images, labels[:2])
    with pytest.raises(ValueError):
        pack_samples(ids, images.astype(np.float32) / 255.0, labels)
    with pytest.raises(ValueError):
        pack_samples(ids, images.astype(np.int64) + 300, labels)
    with pytest.raises(ValueError):
        pack_samples(ids.reshape(3, 1), images, labels)


def test_unpack_rejects_garbage() -> None:
    data = pack_samples(*_samples(4))
    bad = [
        b"",
        b"FDLS",
        b"garbage" * 10,
        data[:-1],  # truncated
        data[:20],  # truncated header/shape
        data + b"\x00",  # trailing byte
        b"XXXX" + data[4:],  # bad magic
        data[:4] + b"\x09" + data[5:],  # bad version
        data[:5] + b"\x00" + data[6:],  # ndim 0
        data[:6] + (2**63).to_bytes(8, "little") + data[14:],  # absurd n
    ]
    for blob in bad:
        with pytest.raises(ValueError):
            unpack_samples(blob)


# ------------------------------------------------------------ encrypt/decrypt


def test_encrypt_decrypt() -> None:
    key = b"k" * 32
    blob = encrypt(key, b"hello", aad=b"a")
    assert len(blob) == 5 + OVERHEAD == 5 + 28
    assert decrypt(key, blob, aad=b"a") == b"hello"
    assert encrypt(key, b"hello", aad=b"a") != blob  # random nonce
    assert decrypt(key, encrypt(key, b"")) == b""
    with pytest.raises(DecryptionError):
        decrypt(b"K" * 32, blob, aad=b"a")
    with pytest.raises(DecryptionError):
        decrypt(key, blob, aad=b"b")
    with pytest.raises(DecryptionError):
        decrypt(key, blob[:-1], aad=b"a")
    with pytest.raises(DecryptionError):
        decrypt(key, blob[:10], aad=b"a")
    with pytest.raises(ValueError):
        encrypt(b"short", b"x")
    assert issubclass(DecryptionError, ValueError)


# ----------------------------------------------------------- seal/open samples


@pytest.mark.parametrize("n", [0, 1, 16])
def test_seal_open_round_trip(keys: dict[int, KeyPair], n: int) -> None:
    i, j = keys[0], keys[1]
    samples = _samples(n, seed=100 + n)
    blob = seal_samples(i, j.public_bytes, 0, 1, *samples, context=b"run-42")
    assert isinstance(blob, np.ndarray) and blob.dtype == np.uint8 and blob.ndim == 1
    _assert_same(open_samples(j, i.public_bytes, 0, 1, blob, context=b"run-42"), samples)
    # bytes input is accepted too
    _assert_same(open_samples(j, i.public_bytes, 0, 1, blob.tobytes(), context=b"run-42"), samples)


def test_seal_open_unauthorised(keys: dict[int, KeyPair]) -> None:
    i, j, k, m = keys[0], keys[1], keys[2], keys[3]
    samples = _samples(5, seed=7)
    blob = seal_samples(i, j.public_bytes, 0, 1, *samples, context=b"run")
    # Third node k, knowing both public keys, cannot open it in any role.
    for own, peer in [(k, i.public_bytes), (k, j.public_bytes)]:
        with pytest.raises(DecryptionError):
            open_samples(own, peer, 0, 1, blob, context=b"run")
    # Read on the reversed edge (j -> i), it fails.
    with pytest.raises(DecryptionError):
        open_samples(j, i.public_bytes, 1, 0, blob, context=b"run")
    # j cannot open it as if it came from another source / edge.
    with pytest.raises(DecryptionError):
        open_samples(j, m.public_bytes, 3, 1, blob, context=b"run")
    with pytest.raises(DecryptionError):
        open_samples(j, i.public_bytes, 3, 1, blob, context=b"run")
    with pytest.raises(DecryptionError):
        open_samples(j, i.public_bytes, 0, 2, blob, context=b"run")
    # ... nor under another context.
    with pytest.raises(DecryptionError):
        open_samples(j, i.public_bytes, 0, 1, blob, context=b"other-run")
    with pytest.raises(DecryptionError):
        open_samples(j, i.public_bytes, 0, 1, blob)
    # Flipped bytes anywhere (nonce, body, tag) and truncation fail.
    for pos in (0, 11, 12, len(blob) // 2, len(blob) - 1):
        tampered = blob.copy()
        tampered[pos] ^= 0x01
        with pytest.raises(DecryptionError):
            open_samples(j, i.public_bytes, 0, 1, tampered, context=b"run")
    with pytest.raises(DecryptionError):
        open_samples(j, i.public_bytes, 0, 1, blob[:-3], context=b"run")
    # The untouched blob still opens.
    _assert_same(open_samples(j, i.public_bytes, 0, 1, blob, context=b"run"), samples)


def test_blob_replayed_with_same_key_other_edge_fails(keys: dict[int, KeyPair]) -> None:
    """The aad binds src/dst even if the same symmetric key were reused."""
    from flower_dl.exchange import crypto

    i, j = keys[0], keys[1]
    key = edge_key(i, j.public_bytes, 0, 1)
    blob = encrypt(key, pack_samples(*_samples(2)), crypto._samples_aad(0, 1, b""))
    with pytest.raises(DecryptionError):
        decrypt(key, blob, crypto._samples_aad(1, 0, b""))


def test_ciphertext_hides_images(keys: dict[int, KeyPair]) -> None:
    i, j = keys[0], keys[1]
    n = 20
    ids, images, labels = _samples(n, seed=3)
    blob = seal_samples(i, j.public_bytes, 0, 1, ids, images, labels).tobytes()
    plaintext_len = len(pack_samples(ids, images, labels))
    assert len(blob) == plaintext_len + 28
    assert plaintext_len >= images.nbytes  # sanity: images are in the plaintext
    for img in images:
        raw = img.tobytes()
        for start in (0, 100, 333, len(raw) // 2, len(raw) - 16):
            window = raw[start : start + 16]
            assert window not in blob
    # Sanity: the same check would catch unencrypted data.
    assert images[0].tobytes()[:16] in pack_samples(ids, images, labels)


def test_seal_rejects_wrong_blob_dtype(keys: dict[int, KeyPair]) -> None:
    i, j = keys[0], keys[1]
    blob = seal_samples(i, j.public_bytes, 0, 1, *_samples(1))
    with pytest.raises(ValueError):
        open_samples(j, i.public_bytes, 0, 1, blob.astype(np.int64))
