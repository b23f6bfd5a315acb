"""End-to-end encryption of the raw samples exchanged between graph neighbours.

In Flower every message between clients is relayed by the server, which could
therefore read the raw image samples that flower-dl nodes exchange with their
neighbours.  This module lets two nodes encrypt those samples end to end:

* every node holds an X25519 :class:`KeyPair` and publishes only its public key
  (through the server);
* for a directed edge ``src -> dst`` both ends derive the same 32-byte symmetric
  key with :func:`edge_key` (X25519 key agreement followed by HKDF-SHA256, with
  the edge and an optional context such as a run id bound into the HKDF info);
* the samples are serialised without pickle (:func:`flower_dl.exchange.packing.pack_samples`) and sealed
  with AES-256-GCM (:func:`encrypt`), the additional authenticated data binding
  the edge and context so that a blob replayed on another edge fails to open.

The server thus only ever routes ciphertext.  This module is the bottom layer of
the package: it imports nothing from the rest of :mod:`flower_dl` (but the
packing format, :mod:`flower_dl.exchange.packing`) nor from ``flwr``. Its
versioned labels (``exchange v1``, ``samples v1``) and the packing format's
(``FDLS`` version 1) are one set: change them together.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from flower_dl.exchange.packing import _as_bytes, pack_samples, unpack_samples

__all__ = [
    "KEY_SIZE",
    "NONCE_SIZE",
    "OVERHEAD",
    "TAG_SIZE",
    "DecryptionError",
    "KeyPair",
    "decrypt",
    "edge_key",
    "encrypt",
    "open_samples",
    "seal_samples",
]

KEY_SIZE: int = 32
"""Size in bytes of X25519 keys and of the derived AES-256 keys."""

NONCE_SIZE: int = 12
"""Size in bytes of the random AES-GCM nonce prepended to each ciphertext."""

TAG_SIZE: int = 16
"""Size in bytes of the AES-GCM authentication tag."""

OVERHEAD: int = NONCE_SIZE + TAG_SIZE
"""Ciphertext expansion of :func:`encrypt`: ``len(blob) == len(plaintext) + OVERHEAD``."""

_HKDF_INFO_PREFIX = b"flower-dl exchange v1|"
_AAD_PREFIX = b"flower-dl samples v1|"


class DecryptionError(ValueError):
    """Raised when a ciphertext cannot be authenticated and decrypted.

    This covers a wrong key (wrong peer, wrong edge, wrong context), wrong
    additional authenticated data, tampered ciphertext and truncated blobs.
    """


@dataclass(frozen=True)
class KeyPair:
    """An X25519 key pair held by one node.

    Parameters
    ----------
    private_bytes : bytes
        Raw 32-byte X25519 private key.  Never leaves the node; hidden from
        ``repr``.
    public_bytes : bytes
        Raw 32-byte X25519 public key, published through the server.

    Raises
    ------
    ValueError
        If either key is not 32 bytes or the public key does not match the
        private key.
    """

    private_bytes: bytes = field(repr=False)
    public_bytes: bytes

    def __post_init__(self) -> None:
        priv = _as_bytes(self.private_bytes, "private_bytes")
        pub = _as_bytes(self.public_bytes, "public_bytes")
        if len(priv) != KEY_SIZE:
            raise ValueError(f"private_bytes must be {KEY_SIZE} bytes, got {len(priv)}")
        if len(pub) != KEY_SIZE:
            raise ValueError(f"public_bytes must be {KEY_SIZE} bytes, got {len(pub)}")
        if _public_from_private(priv) != pub:
            raise ValueError("public_bytes does not match private_bytes")
        object.__setattr__(self, "private_bytes", priv)
        object.__setattr__(self, "public_bytes", pub)

    @classmethod
    def generate(cls) -> KeyPair:
        """Generate a fresh key pair from the OS random source.

        Returns
        -------
        KeyPair
            A new random key pair.
        """
        private = X25519PrivateKey.generate()
        raw = private.private_bytes(
            encoding=serialization.Encoding.Raw,
            format=serialization.PrivateFormat.Raw,
            encryption_algorithm=serialization.NoEncryption(),
        )
        return cls.from_private_bytes(raw)

    @classmethod
    def from_private_bytes(cls, raw: bytes) -> KeyPair:
        """Rebuild a key pair from its raw 32-byte private key.

        Parameters
        ----------
        raw : bytes
            Raw 32-byte X25519 private key.

        Returns
        -------
        KeyPair
            The key pair, with its public key recomputed.

        Raises
        ------
        ValueError
            If ``raw`` is not 32 bytes.
        """
        raw = _as_bytes(raw, "raw")
        if len(raw) != KEY_SIZE:
            raise ValueError(f"private key must be {KEY_SIZE} bytes, got {len(raw)}")
        return cls(private_bytes=raw, public_bytes=_public_from_private(raw))


def _public_from_private(raw: bytes) -> bytes:
    """Compute the raw public key matching a raw private key."""
    return (
        X25519PrivateKey.from_private_bytes(raw)
        .public_key()
        .public_bytes(
            encoding=serialization.Encoding.Raw,
            format=serialization.PublicFormat.Raw,
        )
    )


def _edge_label(src: int, dst: int) -> bytes:
    """Encode a directed edge as ``b"src->dst"``."""
    if isinstance(src, bool) or isinstance(dst, bool):
        raise TypeError("src and dst must be integers, not bool")
    return f"{int(src)}->{int(dst)}".encode()


def edge_key(
    own: KeyPair,
    peer_public: bytes,
    src: int,
    dst: int,
    context: bytes = b"",
) -> bytes:
    """Derive the symmetric key of the directed edge ``src -> dst``.

    The key is HKDF-SHA256 over the X25519 shared secret of ``own`` and
    ``peer_public``, with no salt and with info
    ``b"flower-dl exchange v1|" + b"{src}->{dst}" + b"|" + context``.  The
    sender calls it with its own key pair and the receiver's public key, the
    receiver with its own key pair and the sender's public key; both obtain the
    same key.  Different edges, directions or contexts give unrelated keys.

    Parameters
    ----------
    own : KeyPair
        Key pair of the calling node (either end of the edge).
    peer_public : bytes
        Raw 32-byte public key of the other end of the edge.
    src : int
        Sending node id.
    dst : int
        Receiving node id.
    context : bytes, optional
        Extra domain separation, e.g. a run id or round number.

    Returns
    -------
    bytes
        A 32-byte key suitable for :func:`encrypt` / :func:`decrypt`.

    Raises
    ------
    ValueError
        If ``peer_public`` is not 32 bytes or is a degenerate (low-order) point.
    """
    peer_public = _as_bytes(peer_public, "peer_public")
    context = _as_bytes(context, "context")
    if len(peer_public) != KEY_SIZE:
        raise ValueError(f"peer_public must be {KEY_SIZE} bytes, got {len(peer_public)}")
    private = X25519PrivateKey.from_private_bytes(own.private_bytes)
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(peer_public))
    except ValueError as exc:  # all-zero shared secret from a low-order point
        raise ValueError(f"invalid peer public key: {exc}") from None
    info = _HKDF_INFO_PREFIX + _edge_label(src, dst) + b"|" + context
    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=None, info=info).derive(shared)


def _check_key(key: bytes) -> bytes:
    key = _as_bytes(key, "key")
    if len(key) != KEY_SIZE:
        raise ValueError(f"key must be {KEY_SIZE} bytes, got {len(key)}")
    return key


def encrypt(key: bytes, plaintext: bytes, aad: bytes = b"") -> bytes:
    """Encrypt and authenticate with AES-256-GCM.

    Parameters
    ----------
    key : bytes
        32-byte symmetric key, e.g. from :func:`edge_key`.
    plaintext : bytes
        Data to encrypt.
    aad : bytes, optional
        Additional authenticated data (not encrypted, but must match on
        decryption).

    Returns
    -------
    bytes
        ``nonce (12 random bytes) + ciphertext + tag (16 bytes)``.

    Raises
    ------
    ValueError
        If ``key`` is not 32 bytes.
    """
    key = _check_key(key)
    nonce = os.urandom(NONCE_SIZE)
    body = AESGCM(key).encrypt(nonce, _as_bytes(plaintext, "plaintext"), _as_bytes(aad, "aad"))
    return nonce + body


def decrypt(key: bytes, blob: bytes, aad: bytes = b"") -> bytes:
    """Authenticate and decrypt a blob produced by :func:`encrypt`.

    Parameters
    ----------
    key : bytes
        32-byte symmetric key.
    blob : bytes
        ``nonce + ciphertext + tag``.
    aad : bytes, optional
        Additional authenticated data given to :func:`encrypt`.

    Returns
    -------
    bytes
        The plaintext.

    Raises
    ------
    DecryptionError
        On a wrong key or aad, tampered or truncated blob.
    ValueError
        If ``key`` is not 32 bytes.
    """
    key = _check_key(key)
    blob = _as_bytes(blob, "blob")
    if len(blob) < OVERHEAD:
        raise DecryptionError(f"ciphertext truncated: {len(blob)} bytes < {OVERHEAD}")
    try:
        return AESGCM(key).decrypt(blob[:NONCE_SIZE], blob[NONCE_SIZE:], _as_bytes(aad, "aad"))
    except InvalidTag:
        raise DecryptionError("authentication failed: wrong key, wrong edge/context, or tampered data") from None


def _samples_aad(src: int, dst: int, context: bytes) -> bytes:
    return _AAD_PREFIX + _edge_label(src, dst) + b"|" + _as_bytes(context, "context")


def seal_samples(
    own: KeyPair,
    peer_public: bytes,
    src: int,
    dst: int,
    ids: np.ndarray,
    images: np.ndarray,
    labels: np.ndarray,
    context: bytes = b"",
) -> np.ndarray:
    """Pack and encrypt samples for the directed edge ``src -> dst``.

    Parameters
    ----------
    own : KeyPair
        Key pair of the sender ``src``.
    peer_public : bytes
        Public key of the receiver ``dst``.
    src : int
        Sending node id.
    dst : int
        Receiving node id.
    ids, images, labels : numpy.ndarray
        Samples, as accepted by :func:`pack_samples`.
    context : bytes, optional
        Extra domain separation (e.g. run id); must match on opening.

    Returns
    -------
    numpy.ndarray
        1-D uint8 ciphertext (nonce + ciphertext + tag), ready to be put in a
        Flower message.  The edge and context are bound both in the key and in
        the additional authenticated data.
    """
    key = edge_key(own, peer_public, src, dst, context)
    blob = encrypt(key, pack_samples(ids, images, labels), _samples_aad(src, dst, context))
    return np.frombuffer(blob, dtype=np.uint8).copy()


def open_samples(
    own: KeyPair,
    peer_public: bytes,
    src: int,
    dst: int,
    blob: np.ndarray | bytes,
    context: bytes = b"",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decrypt and unpack samples sealed by :func:`seal_samples`.

    Parameters
    ----------
    own : KeyPair
        Key pair of the receiver ``dst``.
    peer_public : bytes
        Public key of the sender ``src``.
    src : int
        Sending node id.
    dst : int
        Receiving node id.
    blob : numpy.ndarray or bytes
        Ciphertext returned by :func:`seal_samples` (uint8 array or bytes).
    context : bytes, optional
        Context given to :func:`seal_samples`.

    Returns
    -------
    ids : numpy.ndarray
        int64 array of shape ``(n,)``.
    images : numpy.ndarray
        uint8 array of shape ``(n, H, W)``.
    labels : numpy.ndarray
        int64 array of shape ``(n,)``.

    Raises
    ------
    DecryptionError
        If the blob was not sealed for this edge/context by the holder of
        ``peer_public``'s private key, or was tampered with or truncated.
    """
    if isinstance(blob, np.ndarray):
        if blob.dtype != np.uint8:
            raise ValueError(f"blob array must be uint8, got {blob.dtype}")
        data = np.ascontiguousarray(blob).tobytes()
    else:
        data = _as_bytes(blob, "blob")
    key = edge_key(own, peer_public, src, dst, context)
    plaintext = decrypt(key, data, _samples_aad(src, dst, context))
    return unpack_samples(plaintext)
