"""The decoded cache: a dataset's decoded arrays, kept on disk for the next process that loads it.

Decoded arrays (gunzipped IDX files, the parsed ``mnist-5k``, a decoded
``hf-disk`` dataset) are kept in :func:`cache_dir` (see :func:`decoded`); the
torchvision downloads go there too.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from flower_dl.data.images import ImageData
from flower_dl.results.files import atomic_open

_ARRAYS = ("train_images", "train_labels", "test_images", "test_labels")

CACHE_DIR_ENV = "FLOWER_DL_CACHE_DIR"
_DECODED_FORMAT = 2
"""Bump when what is cached changes meaning (e.g. the mnist-5k split): older files are then ignored.

2: the files hold :class:`ImageData`'s class count, normalisation and class names beside the arrays.
"""


def cache_dir() -> Path:
    """flower-dl's cache: ``$FLOWER_DL_CACHE_DIR``, else ``$XDG_CACHE_HOME/flower-dl``, else ``~/.cache/flower-dl``."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "flower-dl"


def decoded(kind: str, sources: list[Path], decode: Callable[[], ImageData]) -> ImageData:
    """``decode()``'s arrays, kept in ``cache_dir()/decoded`` for the next process that needs them.

    Decoding happens in every process that loads a dataset: every simulation
    worker and, on a deployment, every message a SuperNode handles (each runs
    in a fresh process). Gunzipping a full-size dataset or parsing ``mnist-5k``
    costs each of them far more than reading the decoded arrays back from one
    uncompressed ``.npz`` (the one-liner in docs/performance.md measures both). The file is named by a hash
    of ``kind`` and the sources' paths, sizes and modification times (a
    changed source is decoded again) and written atomically
    (:func:`flower_dl.results.files.atomic_open`); a cache that
    cannot be read or written is ignored (then every process decodes).
    """
    key = [f"{_DECODED_FORMAT}", kind]
    for src in sources:
        st = src.stat()
        key.append(f"{src.resolve()}\t{st.st_size}\t{st.st_mtime_ns}")
    digest = hashlib.sha256("\n".join(key).encode()).hexdigest()[:24]
    path = cache_dir() / "decoded" / f"{digest}.npz"
    try:
        with np.load(path) as stored:
            data = _from_stored(stored)
        if data.train_images.dtype == np.uint8 and data.train_labels.dtype == np.int64:
            return data
    except (OSError, KeyError, ValueError, TypeError, EOFError, zipfile.BadZipFile):  # absent, unreadable, foreign
        pass
    data = decode()
    try:
        with atomic_open(path) as fh:
            np.savez(fh, **_to_stored(data))  # type: ignore[arg-type]  # numpy's stub lets ** fill allow_pickle: these keys are array names
    except OSError:  # not writable: the next process decodes again
        pass
    return data


def _to_stored(data: ImageData) -> dict[str, np.ndarray]:
    """Every field of ``data`` as a plain array (no pickles: ``np.load`` reads them with ``allow_pickle=False``)."""
    return {
        **{name: getattr(data, name) for name in _ARRAYS},
        "num_classes": np.int64(data.num_classes),
        "mean": np.asarray(data.mean, dtype=np.float64),
        "std": np.asarray(data.std, dtype=np.float64),
        "classes": np.asarray(data.classes, dtype=str),
    }


def _from_stored(stored: Any) -> ImageData:
    """The inverse of :func:`_to_stored`; a ``KeyError`` for a file that lacks a field."""
    return ImageData(
        **{name: stored[name] for name in _ARRAYS},
        num_classes=int(stored["num_classes"]),
        mean=tuple(float(v) for v in stored["mean"]),
        std=tuple(float(v) for v in stored["std"]),
        classes=tuple(str(c) for c in stored["classes"]),
    )
