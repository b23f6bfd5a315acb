"""MNIST-format datasets: the four IDX files (optionally gzipped) of ``mnist`` and ``fashion-mnist``."""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import cast

import numpy as np

from flower_dl.data.cache import decoded
from flower_dl.data.images import DataError, ImageData

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def read_bytes(path: Path) -> bytes:
    """The whole file, gunzipped if its name ends in ``.gz``."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        return fh.read()


def read_idx(path: Path) -> np.ndarray:
    raw = read_bytes(path)
    if len(raw) < 8 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"data-dir: {str(path)!r} is not an IDX file of unsigned bytes")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise DataError(f"data-dir: {str(path)!r} is truncated (expected shape {shape})")
    return data.reshape(shape).copy()  # writable (frombuffer's view of the bytes is read-only)


def _find_idx(data_dir: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        hits = sorted(data_dir.rglob(name))
        if hits:
            return hits[0]
    return None


def load_idx_dir(data_dir: str | os.PathLike[str]) -> ImageData:
    """Read an MNIST-format (IDX, optionally gzipped) dataset from a folder.

    The four files (``train-images-idx3-ubyte[.gz]`` etc.) may sit anywhere
    below ``data_dir``: torchvision's ``MNIST/raw`` layout and Debian's
    ``/usr/share/datasets/fashion-mnist`` both work.
    """
    check_idx_dir(data_dir)
    root = Path(data_dir).expanduser()
    # check_data_dir found all four files (else it raised)
    found = cast(dict[str, Path], {key: _find_idx(root, stem) for key, stem in IDX_FILES.items()})
    if any(path.suffix == ".gz" for path in found.values()):
        return decoded("idx", list(found.values()), lambda: _decode_idx(data_dir, found))
    return _decode_idx(data_dir, found)


def _decode_idx(data_dir: str | os.PathLike[str], found: dict[str, Path]) -> ImageData:
    arrays = {key: read_idx(path) for key, path in found.items()}
    data = ImageData(
        train_images=arrays["train_images"],
        train_labels=arrays["train_labels"].astype(np.int64),
        test_images=arrays["test_images"],
        test_labels=arrays["test_labels"].astype(np.int64),
    )
    if len(data.train_images) != len(data.train_labels) or len(data.test_images) != len(data.test_labels):
        raise DataError(f"data-dir: {str(data_dir)!r} has image and label files of different lengths")
    return data


def check_idx_dir(data_dir: str | os.PathLike[str]) -> None:
    """Fail fast (no data read) if ``data_dir`` is not a folder holding the four IDX files.

    Raises
    ------
    DataError
        Naming the key ``data-dir``, the value and the files missing.
    """
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DataError(f"data-dir: {str(data_dir)!r} does not exist or is not a directory")
    missing = [stem for stem in IDX_FILES.values() if _find_idx(root, stem) is None]
    if missing:
        raise DataError(
            f"data-dir: {str(data_dir)!r} holds no valid MNIST-format data; missing "
            f"{', '.join(m + '[.gz]' for m in missing)}"
        )
