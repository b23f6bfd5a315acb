"""Writing one node folder (:func:`write_node_folder`), in the ``idx`` or the ``png`` layout, and the checks of what it is given.

Every folder written here reads back in :mod:`flower_dl.data.folders` exactly
(arrays, labels and order); :func:`flower_dl.data.split.split` writes one per node.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from flower_dl.data.folder_parts import CLASSES_FILE, DIGIT_CLASSES
from flower_dl.data.folders import LAYOUTS, SOURCE_IDS_FILE
from flower_dl.data.idx import IDX_FILES
from flower_dl.data.images import DataError, describe_image
from flower_dl.results.files import default_mode


def write_node_folder(
    out_dir: str | os.PathLike[str],
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray | None = None,
    test_labels: np.ndarray | None = None,
    *,
    layout: str,
    classes: Sequence[str] | None = None,
    source_ids: np.ndarray | None = None,
) -> Path:
    """Write one node folder that :func:`flower_dl.data.folders.load_node_folder` reads back identically (arrays, labels, order).

    The folder is built in a hidden staging folder beside ``out_dir`` and
    renamed into place at the end, so a crash never leaves a half-written node
    folder (only a hidden ``.<name>.*.tmp`` one). IDX files are written plain,
    not gzipped: a node then reads them without decompressing in every process
    (a node folder is small; compress the whole folder to move it). The image
    tree is ``train/<class>/<position>.png`` (position zero-padded to at least 5
    digits), so that it reads back in the written order.

    Parameters
    ----------
    out_dir : str or os.PathLike
        The node folder; must not exist or be empty.
    train_images, test_images : numpy.ndarray
        ``uint8`` ``(n, H, W)`` or ``(n, H, W, 3)``, one shape for both; no test
        arrays: a folder whose node is given a ``test-dir``.
    train_labels, test_labels : numpy.ndarray
        Integer labels, indices into ``classes``.
    layout : str
        ``"idx"`` or ``"png"``.
    classes : sequence of str, optional
        Class names, written as ``classes.txt`` (none: the digits 0-9, no file);
        any number of them (``idx``: at most 256).
    source_ids : numpy.ndarray, optional
        The training samples' source ids, written as ``source-ids.txt``.

    Returns
    -------
    pathlib.Path
        The folder written.
    """
    names = _check_classes_arg(classes)
    train_labels = _check_arrays("train", train_images, train_labels, len(names))
    has_test = test_images is not None or test_labels is not None
    if has_test:
        test_labels = _check_arrays("test", test_images, test_labels, len(names), like=train_images)
    if layout not in LAYOUTS:
        raise DataError(f"write_node_folder: layout {layout!r} is not known; allowed: {', '.join(LAYOUTS)}")
    _check_layout_classes(layout, names, "write_node_folder")
    if source_ids is not None:
        source_ids = np.asarray(source_ids, dtype=np.int64)
        if source_ids.shape != train_labels.shape:
            raise DataError(
                f"write_node_folder: {len(source_ids)} source ids for {len(train_labels)} training samples; "
                "they must be equal"
            )
    out = _check_empty(out_dir, "write_node_folder")

    def write(folder: Path) -> None:
        if classes is not None:
            (folder / CLASSES_FILE).write_text("".join(f"{c}\n" for c in names), encoding="utf-8")
        if source_ids is not None:
            (folder / SOURCE_IDS_FILE).write_text("".join(f"{i}\n" for i in source_ids.tolist()), encoding="ascii")
        if layout == "idx":
            _write_idx(folder, "train", train_images, train_labels)
            if has_test:
                assert test_images is not None and test_labels is not None  # _check_arrays refused one alone
                _write_idx(folder, "test", test_images, test_labels)
        else:
            _write_tree(folder / "train", train_images, train_labels, names)
            if has_test:
                assert test_images is not None and test_labels is not None  # _check_arrays refused one alone
                _write_tree(folder / "test", test_images, test_labels, names)

    _staged(out, write)
    return out


def _bad_names(names: tuple[str, ...]) -> bool:
    """Whether ``names`` cannot be a ``classes.txt``: none, repeated, or one that is no folder name."""
    bad = [c for c in names if not c or c != c.strip() or "/" in c or "\n" in c or c.startswith(".")]
    return not names or len(set(names)) != len(names) or bool(bad)


def _check_classes_arg(classes: Sequence[str] | None) -> tuple[str, ...]:
    if classes is None:
        return DIGIT_CLASSES
    names = tuple(str(c) for c in classes)
    if _bad_names(names):
        raise DataError(
            f"classes: {list(names)!r} is not allowed; allowed: one or more unique names, each a "
            "valid folder name (no '/', no leading '.', no surrounding spaces)"
        )
    return names


IDX_MAX_CLASSES = 256
"""IDX label files hold one unsigned byte a label."""


def _check_layout_classes(layout: str, names: tuple[str, ...], who: str) -> None:
    if layout == "idx" and len(names) > IDX_MAX_CLASSES:
        raise DataError(
            f"{who}: {len(names)} classes do not fit the idx layout (labels are bytes); allowed: at most "
            f"{IDX_MAX_CLASSES}, or layout png"
        )


def _check_arrays(
    part: str,
    images: np.ndarray | None,
    labels: np.ndarray | None,
    num_classes: int,
    *,
    like: np.ndarray | None = None,
) -> np.ndarray:
    """Check ``part``'s arrays for writing (of ``like``'s image shape, when given); return the labels as ``int64``."""
    if images is None or labels is None:
        raise DataError(f"write_node_folder: {part} images and labels must be given together")
    images, labels = np.asarray(images), np.asarray(labels)
    colour = images.ndim == 4 and images.shape[3] == 3
    if images.dtype != np.uint8 or not (images.ndim == 3 or colour) or 0 in images.shape[1:]:
        raise DataError(
            f"write_node_folder: {part} images are {images.dtype} {images.shape}; allowed: uint8 (n, H, W) "
            "or (n, H, W, 3)"
        )
    if like is not None and images.shape[1:] != np.shape(like)[1:]:
        raise DataError(
            f"write_node_folder: {part} images are {describe_image(images.shape[1:])} but the training images "
            f"are {describe_image(np.shape(like)[1:])}; a node's images must have one size and mode"
        )
    if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"write_node_folder: {part} labels are {labels.dtype} {labels.shape}; allowed: integers ({len(images)},)"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(
            f"write_node_folder: {part} labels span {int(labels.min())}..{int(labels.max())}; "
            f"allowed: 0..{num_classes - 1} (one per class)"
        )
    return labels.astype(np.int64)


def _check_empty(path: str | os.PathLike[str], who: str) -> Path:
    out = Path(path).expanduser()
    if out.exists() and not out.is_dir():
        raise DataError(f"{who}: output folder {str(path)!r} is a file; choose an empty or new folder")
    if out.is_dir() and any(out.iterdir()):
        raise DataError(f"{who}: output folder {str(path)!r} is not empty; choose an empty or new folder")
    return out


def _staged(out: Path, write: Callable[[Path], None]) -> None:
    """Run ``write(folder)`` on a hidden staging folder beside ``out``, then rename it to ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        os.chmod(stage, default_mode(directory=True))  # mkdtemp's folders are private (0700)
        write(stage)
        os.replace(stage, out)  # onto a missing or empty folder
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def idx_bytes(array: np.ndarray) -> bytes:
    """An ``uint8`` array as an IDX file: ``0 0 8 ndim``, each size as big-endian uint32, the bytes."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    return header + array.tobytes()


def _write_idx(folder: Path, part: str, images: np.ndarray, labels: np.ndarray) -> None:
    (folder / IDX_FILES[f"{part}_images"]).write_bytes(idx_bytes(images))
    (folder / IDX_FILES[f"{part}_labels"]).write_bytes(idx_bytes(labels.astype(np.uint8)))


def png_bytes(image: np.ndarray) -> bytes:
    """One ``uint8`` image as a PNG: ``(H, W)`` 8-bit grayscale (``L``), ``(H, W, 3)`` ``RGB``."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _write_tree(part_dir: Path, images: np.ndarray, labels: np.ndarray, classes: tuple[str, ...]) -> None:
    """``part_dir/<class>/<position>.png``, one folder per class present."""
    width = max(5, len(str(len(images) - 1)))
    for label in np.unique(labels).tolist():
        (part_dir / classes[label]).mkdir(parents=True)
    for i, (image, label) in enumerate(zip(images, labels.tolist())):
        (part_dir / classes[label] / f"{i:0{width}d}.png").write_bytes(png_bytes(image))
