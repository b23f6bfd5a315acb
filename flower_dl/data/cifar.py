"""CIFAR-10 and CIFAR-100 from their Python pickle batches (the version torchvision downloads)."""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flower_dl import registry
from flower_dl.data.images import DataError, ImageData


@dataclass(frozen=True)
class CifarFiles:
    """Where a CIFAR version keeps its batches (the Python version torchvision downloads) and their keys."""

    folder: str
    title: str
    train: tuple[str, ...]
    test: str
    meta: str
    labels_key: bytes
    names_key: bytes
    num_classes: int

    def files(self) -> tuple[str, ...]:
        return (*self.train, self.test, self.meta)


CIFAR: dict[str, CifarFiles] = {
    "cifar10": CifarFiles(
        "cifar-10-batches-py", "CIFAR-10", tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch",
        "batches.meta", b"labels", b"label_names", registry.num_classes("cifar10"),
    ),
    "cifar100": CifarFiles(
        "cifar-100-python", "CIFAR-100", ("train",), "test", "meta", b"fine_labels", b"fine_label_names",
        registry.num_classes("cifar100"),
    ),
}  # fmt: skip
CIFAR_SIDE = 32


def find_cifar(data_dir: str | os.PathLike[str], dataset: str) -> Path:
    """The folder holding ``dataset``'s batches: ``data_dir`` itself, or the first folder below it of the usual name.

    torchvision's root layout puts ``cifar-10-batches-py`` under the root;
    a folder that holds the files under another name works as ``data_dir``
    itself.

    Raises
    ------
    DataError
        Naming ``data-dir``, the value and the files missing.
    """
    spec, root = CIFAR[dataset], Path(data_dir).expanduser()
    if not root.is_dir():
        raise DataError(f"data-dir: {str(data_dir)!r} does not exist or is not a directory")
    named = sorted(p for p in root.rglob(spec.folder) if p.is_dir())
    for folder in (root, *named):
        if all((folder / name).is_file() for name in spec.files()):
            return folder
    where = named[0] if named else root
    missing = [name for name in spec.files() if not (where / name).is_file()]
    shown = f"{where.relative_to(root).as_posix()}/" if named else f"{spec.folder}/ (or at the top)"
    raise DataError(
        f"data-dir: {str(data_dir)!r} holds no {spec.title} batches ({dataset}); missing in {shown}: "
        f"{', '.join(missing)} (the Python version, as torchvision's download unpacks it)"
    )


def load_cifar_dir(data_dir: str | os.PathLike[str], dataset: str = "cifar10") -> ImageData:
    """Read CIFAR-10 or CIFAR-100 from its Python pickle batches under ``data_dir`` (see :func:`find_cifar`).

    Each batch is a pickled dict: ``b"data"``, ``uint8`` ``(N, 3072)`` rows of
    three 32x32 row-major planes, red, green, blue, which become
    ``(N, 32, 32, 3)``; the labels under ``b"labels"`` (CIFAR-10) or
    ``b"fine_labels"`` (CIFAR-100); the class names in the meta file. The
    pickles are opened with :func:`pickle.load`, which runs whatever a file
    asks: read only batches from a source you trust (as torchvision does).
    They load fast, so nothing is cached.
    """
    spec = CIFAR[dataset]
    folder = find_cifar(data_dir, dataset)
    train = [_read_cifar_batch(folder / name, spec) for name in spec.train]
    test_images, test_labels = _read_cifar_batch(folder / spec.test, spec)
    meta = _unpickle(folder / spec.meta)
    names = meta.get(spec.names_key) if isinstance(meta, dict) else None
    if not isinstance(names, list) or len(names) != spec.num_classes:
        raise DataError(
            f"data-dir: {str(folder / spec.meta)!r} has no list of {spec.num_classes} class names under {spec.names_key!r}"
        )
    return ImageData(
        train_images=np.concatenate([images for images, _ in train]),
        train_labels=np.concatenate([labels for _, labels in train]),
        test_images=test_images,
        test_labels=test_labels,
        num_classes=spec.num_classes,
        classes=tuple(n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names),
    )


def _unpickle(path: Path) -> Any:
    try:
        with open(path, "rb") as fh:
            return pickle.load(fh, encoding="bytes")
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError, ImportError) as err:
        raise DataError(
            f"data-dir: {str(path)!r} is not a readable CIFAR pickle ({type(err).__name__}: {err})"
        ) from err


def _read_cifar_batch(path: Path, spec: CifarFiles) -> tuple[np.ndarray, np.ndarray]:
    """One batch file as ``uint8`` ``(N, 32, 32, 3)`` images (channels last) and ``int64`` labels."""
    batch = _unpickle(path)
    if not isinstance(batch, dict) or b"data" not in batch or spec.labels_key not in batch:
        raise DataError(f"data-dir: {str(path)!r} is not a {spec.title} batch (no b'data' and {spec.labels_key!r})")
    rows = np.asarray(batch[b"data"])
    labels = np.asarray(batch[spec.labels_key])
    side = CIFAR_SIDE
    if rows.dtype != np.uint8 or rows.ndim != 2 or rows.shape[1] != 3 * side * side:
        raise DataError(
            f"data-dir: {str(path)!r} holds b'data' of {rows.dtype} {rows.shape}; a batch holds uint8 (N, {3 * side * side})"
        )
    if labels.shape != (len(rows),) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"data-dir: {str(path)!r} holds {labels.shape} labels for {len(rows)} images")
    if len(labels) and (labels.min() < 0 or labels.max() >= spec.num_classes):
        raise DataError(
            f"data-dir: {str(path)!r} holds labels {int(labels.min())}..{int(labels.max())}; "
            f"allowed: 0..{spec.num_classes - 1}"
        )
    images = np.ascontiguousarray(rows.reshape(-1, 3, side, side).transpose(0, 2, 3, 1))  # planes R, G, B -> [h, w, c]
    return images, labels.astype(np.int64)
