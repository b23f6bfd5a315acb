"""Nodes that own their data: one folder per node, read by that node alone (``dataset = "folder"``).

A node folder holds only its node's data, in one of two layouts:

``idx``
    MNIST-format IDX files at the folder's root, as :func:`flower_dl.data.idx.load_idx_dir`
    reads them: ``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``
    and, for the node's own test set, ``t10k-images-idx3-ubyte[.gz]``,
    ``t10k-labels-idx1-ubyte[.gz]``. The image files hold ``uint8``
    ``(n, H, W)`` grayscale or ``(n, H, W, 3)`` colour images (IDX stores any
    number of dimensions; the names keep ``idx3``), the label files ``uint8``
    labels (so at most 256 classes). Unlike :func:`~flower_dl.data.idx.load_idx_dir`,
    nothing below the root is searched: a folder of node folders must not be
    mistaken for one node's data.
``png``
    An image tree ``train/<class>/<file>`` and ``test/<class>/<file>``; any
    format Pillow reads, kept at its own size and channels
    (:func:`flower_dl.data.images.image_array`): grayscale modes (``L``, ``1``,
    ``I;16`` scaled to 8 bits, ``LA`` without its alpha, ...) become ``(H, W)``,
    every colour mode (``RGB``, ``RGBA`` and ``P`` without alpha, ``CMYK``, ...)
    ``(H, W, 3)`` RGB. MNIST digits are white on black: a tree of dark-on-light
    images must be inverted first to resemble them.

One size and mode. A node's images (train and test together, a ``test-dir``'s
too) must all have the same size and be all grayscale or all colour: a
folder that mixes them is refused, naming two files that differ. With
``image-size > 0`` every image is resized to ``image-size x image-size``
(Pillow's LANCZOS filter, the sharpest of its antialiasing filters when
shrinking; the aspect ratio is not kept), so sizes may then differ, modes
still not.

Classes are the digits ``0``..``9`` (class folder names, IDX label values) or,
when the folder root holds a ``classes.txt``, the names listed there one per
line (label = line index; any number of them, the model gets one output
each). Hidden files and folders (names starting with ``.``) are ignored.

Order. The samples of an image tree are ordered by file name across all its
class folders (natural sort: digit runs compare as numbers, so ``9.png`` comes
before ``10.png``), ties broken by class index. :func:`~flower_dl.data.split.split` names a node's
files by their position in the node's training set, so a folder it wrote reads
back in exactly the written order, which is the order the node would have had
from the source dataset (sorted source ids). Sorting class by class would
regroup the samples by label and change which samples a seeded shuffle or the
exchange picks.

The test set. A node evaluates on its folder's test part, or on a shared
``test-dir`` (same layouts; only its test part is read, found as the image tree
``test/<class>/``, or the ``t10k`` files at its root or in its ``test/``).
:func:`~flower_dl.data.split.split` writes the whole source test set once, as ``test/`` at the root
of its output (``test="shared"``, the default), because today's node
(``node_state.Node.test_set``) evaluates every node on the whole test set of
the dataset: the same test samples give the same accuracies.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flower_dl.data.folder_parts import (
    CLASSES_FILE,
    DIGIT_CLASSES,
    ONE_SHAPE,
    has_idx,
    read_idx_part,
    read_test_part,
    read_tree,
)
from flower_dl.data.idx import IDX_FILES
from flower_dl.data.images import DataError, ImageData, check_image_size, describe_image, input_shape, normalisation

LAYOUTS: tuple[str, ...] = ("idx", "png")
TEST_SETS: tuple[str, ...] = ("shared", "own")
SOURCE_IDS_FILE = "source-ids.txt"
MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = "flower-dl-split"
MANIFEST_VERSION = 1
PARTITION_ID = "{partition-id}"


@dataclass(frozen=True)
class FolderData:
    """One node's data as read from its folder.

    Attributes
    ----------
    train_images, test_images : numpy.ndarray
        ``uint8`` ``(n, H, W)`` grayscale or ``(n, H, W, 3)`` colour, one shape for both.
    train_labels, test_labels : numpy.ndarray
        ``int64``, indices into ``classes``.
    classes : tuple[str, ...]
        Class names; a label is its class's index.
    source_index : numpy.ndarray
        ``int64`` local id of each training sample: its position (``arange``).
    source_ids : numpy.ndarray or None
        ``int64`` ids of the training samples in the source dataset, when the
        folder was written by :func:`~flower_dl.data.split.split` (its ``source-ids.txt``); else ``None``.
    layout : str
        ``"idx"`` or ``"png"`` (the image tree), the layout of the node's folder.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: tuple[str, ...]
    source_index: np.ndarray
    source_ids: np.ndarray | None
    layout: str

    @property
    def num_classes(self) -> int:
        """The model's outputs: one per class of ``classes`` (present in the samples or not)."""
        return len(self.classes)

    def image_data(self) -> ImageData:
        """The arrays as an :class:`~flower_dl.data.images.ImageData` (what the rest of flower-dl takes).

        With the class count and names, and ``normalisation("folder", channels)``:
        MNIST's for grayscale, 0.5 / 0.5 for colour, the same on every node.
        """
        mean, std = normalisation("folder", input_shape(self.train_images)[0])
        return ImageData(
            self.train_images, self.train_labels, self.test_images, self.test_labels,
            num_classes=self.num_classes, mean=mean, std=std, classes=self.classes,
        )  # fmt: skip


def exchange_ids(data: FolderData, partition_id: int) -> np.ndarray:
    """Sample ids for the exchange, unique across nodes.

    :func:`flower_dl.exchange.plan.merge` dedupes received samples by id, across
    nodes: positions alone (``source_index``) would collide between nodes and
    drop distinct samples. A folder written by :func:`~flower_dl.data.split.split` keeps its source
    ids, so nodes sharing a source sample dedupe it exactly as a run on the
    source dataset does; otherwise the id is ``(partition_id + 1) << 32 | position``,
    which no source id (< 2**32) can equal.
    """
    if data.source_ids is not None:
        return data.source_ids
    return ((partition_id + 1) << 32) | data.source_index


# ------------------------------------------------------------ data-dir template
def data_dir_for(template: str, partition_id: int, num_nodes: int) -> str:
    """The data folder of node ``partition_id`` from the run config's ``data-dir`` template.

    ``{partition-id}`` is replaced by the node's partition id. A template
    without it names one folder for every node, which only a 1-node run may do:
    nodes that own their data must not silently read the same samples.

    Raises
    ------
    DataError
        Empty template, no ``{partition-id}`` with ``num_nodes > 1``, another
        ``{...}`` placeholder, or a partition id outside ``0..num_nodes-1``.
    """
    if not template:
        raise DataError(
            "data-dir: '' is empty; dataset = 'folder' needs a folder per node, e.g. '/data/node-{partition-id}'"
        )
    if not 0 <= partition_id < num_nodes:
        raise DataError(f"data-dir: partition-id {partition_id} is out of range; allowed: 0..{num_nodes - 1}")
    if PARTITION_ID not in template and num_nodes > 1:
        raise DataError(
            f"data-dir: {template!r} has no {PARTITION_ID}; with num-nodes = {num_nodes} every node "
            f"would read the same folder"
        )
    path = template.replace(PARTITION_ID, str(partition_id))
    unknown = re.search(r"\{[^{}/]*\}", path)
    if unknown:
        raise DataError(f"data-dir: {template!r} has an unknown placeholder {unknown.group()}; allowed: {PARTITION_ID}")
    return path


def resolve_data_dir(node_config_dir: str, run_template: str, partition_id: int, num_nodes: int) -> str:
    """The node's data folder: its node config's ``data-dir`` as is, else the run config's template filled in.

    A SuperNode started with ``--node-config "data-dir=..."`` names the folder
    on its own machine, which the run config cannot know.
    """
    if node_config_dir:
        return str(node_config_dir)
    return data_dir_for(run_template, partition_id, num_nodes)


# ---------------------------------------------------------------------- reading
def load_node_folder(
    data_dir: str | os.PathLike[str], *, node: int | str, test_dir: str = "", image_size: int = 0
) -> FolderData:
    """Read node ``node``'s folder (and the shared ``test_dir``, when given), checking everything first.

    Parameters
    ----------
    data_dir : str or os.PathLike
        The node's folder, in the ``idx`` or ``png`` layout (detected).
    node : int or str
        The node's partition id, named in every error.
    test_dir : str
        A folder whose test part replaces the node's own (then the node's own
        test files, if any, are not read).
    image_size : int
        ``> 0``: every image resized to ``image_size x image_size`` (LANCZOS);
        0: images kept at their own size, which must be one for all.

    Returns
    -------
    FolderData
        Training samples in folder order (see the module docstring) and the test set.

    Raises
    ------
    DataError
        Naming the node, the folder and the file: missing or empty folder, no
        training data, a class folder or label outside the classes, an image
        Pillow cannot read, images of two sizes or modes (two files named),
        IDX files of different lengths, a malformed ``classes.txt`` or
        ``source-ids.txt``, no test data, a negative ``image-size``.
    """
    image_size = check_image_size(image_size)
    root = Path(data_dir).expanduser()
    where = f"node {node}: data-dir {str(data_dir)!r}"
    if not root.is_dir():
        raise DataError(f"{where} does not exist or is not a folder")
    classes = _read_classes(root, where) or DIGIT_CLASSES
    layout = _detect_layout(root, where)
    if layout == "idx":
        train_images, train_labels, train_first = read_idx_part(root, "train", len(classes), where, image_size)
    else:
        train_images, train_labels, train_first = read_tree(root / "train", "train", classes, where, image_size)
    if len(train_images) == 0:
        what = "train/" if layout == "png" else IDX_FILES["train_images"]
        raise DataError(f"{where}: {what} holds no images; a node needs training samples")
    if test_dir:
        test_root = Path(test_dir).expanduser()
        test_where = f"node {node}: test-dir {str(test_dir)!r}"
        if not test_root.is_dir():
            raise DataError(f"{test_where} does not exist or is not a folder")
        test_classes = _read_classes(test_root, test_where)
        if test_classes is not None and test_classes != classes:
            raise DataError(
                f"{test_where}: {CLASSES_FILE} lists {', '.join(test_classes)} but the data-dir "
                f"{str(data_dir)!r} has classes {', '.join(classes)}; they must be the same"
            )
        test_images, test_labels, test_first = read_test_part(test_root, classes, test_where, image_size)
        test_first = f"test-dir {str(test_dir)!r}: {test_first}"
    else:
        test_images, test_labels, test_first = read_test_part(root, classes, where, image_size)
    if test_images.shape[1:] != train_images.shape[1:]:
        raise DataError(
            f"{where}: {train_first} is {describe_image(train_images.shape[1:])} but {test_first} is "
            f"{describe_image(test_images.shape[1:])}; {ONE_SHAPE}"
        )
    n = len(train_images)
    return FolderData(
        train_images=train_images,
        train_labels=train_labels,
        test_images=test_images,
        test_labels=test_labels,
        classes=classes,
        source_index=np.arange(n, dtype=np.int64),
        source_ids=_read_source_ids(root, n, where),
        layout=layout,
    )


def _read_classes(root: Path, where: str) -> tuple[str, ...] | None:
    """The names in ``root/classes.txt`` (blank lines at the end ignored), or ``None`` without one."""
    path = root / CLASSES_FILE
    if not path.is_file():
        return None
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{where}: {CLASSES_FILE} cannot be read as UTF-8 text ({err})") from err
    names = [line.strip() for line in lines]
    while names and not names[-1]:
        names.pop()
    if not names:
        raise DataError(f"{where}: {CLASSES_FILE} lists no classes; allowed: one class name a line, at least one")
    if "" in names:
        raise DataError(f"{where}: {CLASSES_FILE} line {names.index('') + 1} is blank; allowed: one class name a line")
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            raise DataError(f"{where}: {CLASSES_FILE} line {i + 1} repeats the class {name!r}; names must be unique")
        if "/" in name or name.startswith("."):
            raise DataError(
                f"{where}: {CLASSES_FILE} line {i + 1}: {name!r} cannot be a folder name; allowed: no '/', no leading '.'"
            )
        seen.add(name)
    return tuple(names)


def _detect_layout(root: Path, where: str) -> str:
    has_tree, has_train_idx = (root / "train").is_dir(), has_idx(root, "train")
    if has_tree and has_train_idx:
        raise DataError(
            f"{where}: holds both train/ and {IDX_FILES['train_images']}[.gz]; keep one layout "
            f"(allowed: {', '.join(LAYOUTS)})"
        )
    if has_tree:
        return "png"
    if has_train_idx:
        return "idx"
    if not any(not p.name.startswith(".") for p in root.iterdir()):
        raise DataError(f"{where} is empty; it must hold this node's data")
    raise DataError(
        f"{where}: holds no training data; expected train/<class>/ image folders or "
        f"{IDX_FILES['train_images']}[.gz] and {IDX_FILES['train_labels']}[.gz]"
    )


def _read_source_ids(root: Path, n: int, where: str) -> np.ndarray | None:
    """``root/source-ids.txt`` (one integer a line, one per training sample), or ``None`` without one."""
    path = root / SOURCE_IDS_FILE
    if not path.is_file():
        return None
    try:
        tokens = path.read_text(encoding="ascii").split()
        ids = np.asarray([int(t) for t in tokens], dtype=np.int64)
    except (OSError, UnicodeDecodeError, ValueError, OverflowError) as err:
        raise DataError(f"{where}: {SOURCE_IDS_FILE} is not one integer a line ({err})") from err
    if len(ids) != n:
        raise DataError(f"{where}: {SOURCE_IDS_FILE} lists {len(ids)} ids for {n} training samples; they must be equal")
    if len(ids) and ids.min() < 0:
        raise DataError(f"{where}: {SOURCE_IDS_FILE} holds the negative id {int(ids.min())}; allowed: ids >= 0")
    return ids
