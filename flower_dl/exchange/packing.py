"""The packing format of exchanged samples: ids, images and labels as bytes, without pickle.

What :func:`flower_dl.exchange.crypto.seal_samples` encrypts, and what
:func:`~flower_dl.exchange.crypto.open_samples` gives back to
:func:`unpack_samples`. Like :mod:`flower_dl.exchange.crypto`, it imports
nothing from the rest of :mod:`flower_dl` nor from ``flwr``; its format
version (``FDLS`` version 1) and crypto's labels (``exchange v1``,
``samples v1``) change together.
"""

from __future__ import annotations

import struct

import numpy as np

# Serialisation format of pack_samples (all integers little-endian):
#   magic  b"FDLS"          4 bytes
#   version                 uint8 (= 1)
#   image ndim (>= 1)       uint8, ndim of the images array, including the n axis
#   n                       uint64
#   image dims 1..ndim-1    uint64 each
#   ids                     n * int64
#   images                  n * prod(dims) * uint8
#   labels                  n * int64
_MAGIC = b"FDLS"
_VERSION = 1
_PREFIX = struct.Struct("<4sBBQ")
_MAX_IMAGE_NDIM = 8


def _as_bytes(value: object, name: str) -> bytes:
    """Return ``value`` as immutable ``bytes`` or raise ``TypeError``."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"{name} must be bytes, got {type(value).__name__}")


def _check_int_array(arr: np.ndarray, name: str) -> np.ndarray:
    """Validate a 1-D integer array and return it as contiguous little-endian int64."""
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must have an integer dtype, got {arr.dtype}")
    if arr.size and arr.dtype.kind == "u" and arr.dtype.itemsize >= 8 and int(arr.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"{name} has values that do not fit in int64")
    return np.ascontiguousarray(arr, dtype="<i8")


def pack_samples(ids: np.ndarray, images: np.ndarray, labels: np.ndarray) -> bytes:
    """Serialise a batch of samples losslessly, without pickle.

    Parameters
    ----------
    ids : numpy.ndarray
        Sample ids, shape ``(n,)``, integer dtype (stored as int64).
    images : numpy.ndarray
        Images, shape ``(n, H, W)`` (any ``ndim >= 1`` with leading ``n``),
        dtype uint8 (integer arrays with values in ``[0, 255]`` are accepted).
    labels : numpy.ndarray
        Labels, shape ``(n,)``, integer dtype (stored as int64).

    Returns
    -------
    bytes
        A fixed little-endian header (magic, version, image shape) followed by
        the raw bytes of ids, images and labels.

    Raises
    ------
    ValueError
        On inconsistent lengths, wrong dimensionality or unsupported dtypes.
    """
    ids_a = _check_int_array(np.asarray(ids), "ids")
    labels_a = _check_int_array(np.asarray(labels), "labels")
    images_a = np.asarray(images)
    if images_a.ndim < 1 or images_a.ndim > _MAX_IMAGE_NDIM:
        raise ValueError(f"images must have 1..{_MAX_IMAGE_NDIM} dimensions, got {images_a.ndim}")
    if images_a.dtype != np.uint8:
        if images_a.size and images_a.dtype.kind not in "iu":
            raise ValueError(f"images must be uint8, got {images_a.dtype}")
        if images_a.size and (int(images_a.min()) < 0 or int(images_a.max()) > 255):
            raise ValueError("images have values outside [0, 255]")
        images_a = images_a.astype(np.uint8)
    images_a = np.ascontiguousarray(images_a)
    n = images_a.shape[0]
    if ids_a.shape[0] != n or labels_a.shape[0] != n:
        raise ValueError(f"length mismatch: {ids_a.shape[0]} ids, {n} images, {labels_a.shape[0]} labels")
    header = _PREFIX.pack(_MAGIC, _VERSION, images_a.ndim, n)
    header += struct.pack(f"<{images_a.ndim - 1}Q", *images_a.shape[1:])
    return b"".join((header, ids_a.tobytes(), images_a.tobytes(), labels_a.tobytes()))


def unpack_samples(data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of :func:`pack_samples`.

    Parameters
    ----------
    data : bytes
        Output of :func:`pack_samples`.

    Returns
    -------
    ids : numpy.ndarray
        int64 array of shape ``(n,)``.
    images : numpy.ndarray
        uint8 array of shape ``(n, H, W)`` (as packed).
    labels : numpy.ndarray
        int64 array of shape ``(n,)``.

    Raises
    ------
    ValueError
        If ``data`` is truncated, has trailing bytes, a bad magic/version or an
        implausible header.
    """
    if isinstance(data, np.ndarray):
        data = data.tobytes()
    data = _as_bytes(data, "data")
    if len(data) < _PREFIX.size:
        raise ValueError(f"sample data truncated: {len(data)} bytes, header needs {_PREFIX.size}")
    magic, version, ndim, n = _PREFIX.unpack_from(data, 0)
    if magic != _MAGIC:
        raise ValueError("not flower-dl sample data (bad magic)")
    if version != _VERSION:
        raise ValueError(f"unsupported sample data version {version}")
    if not 1 <= ndim <= _MAX_IMAGE_NDIM:
        raise ValueError(f"invalid image ndim {ndim} in header")
    offset = _PREFIX.size
    dims_size = 8 * (ndim - 1)
    if len(data) < offset + dims_size:
        raise ValueError("sample data truncated in the shape header")
    dims = struct.unpack_from(f"<{ndim - 1}Q", data, offset)
    offset += dims_size
    per_image = 1
    for d in dims:
        per_image *= d
    # Python ints: no overflow; compare with the actual length before allocating.
    expected = offset + n * 8 + n * per_image + n * 8
    if len(data) != expected:
        kind = "truncated" if len(data) < expected else "has trailing bytes"
        raise ValueError(f"sample data {kind}: {len(data)} bytes, header implies {expected}")
    ids = np.frombuffer(data, dtype="<i8", count=n, offset=offset).astype(np.int64)
    offset += 8 * n
    images = np.frombuffer(data, dtype=np.uint8, count=n * per_image, offset=offset).reshape((n, *dims)).copy()
    offset += n * per_image
    labels = np.frombuffer(data, dtype="<i8", count=n, offset=offset).astype(np.int64)
    return ids, images, labels
