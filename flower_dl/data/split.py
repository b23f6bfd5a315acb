"""Splitting a dataset into node folders (``flower-dl split``): :func:`split`, and the manifest it writes.

One node folder is written by :func:`flower_dl.data.folder_writer.write_node_folder`. The reading side, the layouts and the ids are in :mod:`flower_dl.data.folders`; every
folder written here reads back there exactly (arrays, labels and order), which
``tests/test_folders.py`` checks for both layouts, and ``tests/test_colour_data.py``
for colour. Grayscale ``(n, H, W)`` images are written as 8-bit grayscale PNGs
or 3-D IDX arrays, colour ``(n, H, W, 3)`` ones as RGB PNGs or 4-D IDX arrays,
at their own size; IDX labels are bytes, so that layout holds at most 256 classes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from flower_dl.data.folder_parts import CLASSES_FILE, DIGIT_CLASSES
from flower_dl.data.folder_writer import (
    _bad_names,
    _check_arrays,
    _check_classes_arg,
    _check_empty,
    _check_layout_classes,
    _staged,
    _write_idx,
    _write_tree,
    write_node_folder,
)
from flower_dl.data.folders import (
    LAYOUTS,
    MANIFEST_FILE,
    MANIFEST_FORMAT,
    MANIFEST_VERSION,
    PARTITION_ID,
    SOURCE_IDS_FILE,
    TEST_SETS,
)
from flower_dl.data.images import DataError, ImageData
from flower_dl.data.partition import partition_indices
from flower_dl.results.files import atomic_write_text


# ------------------------------------------------------------------------ split
def split(
    data: ImageData,
    *,
    partitioner: str,
    num_nodes: int,
    digits_per_node: int = 3,
    alpha: float = 0.5,
    seed: int = 0,
    out_dir: str | os.PathLike[str],
    layout: str,
    source: str,
    test: str = "shared",
    classes: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Write a dataset as one folder per node, ``node-<partition-id>``, plus ``manifest.json``.

    Node ``i``'s folder holds exactly the training samples a run on the source
    dataset gives node ``i`` (:func:`flower_dl.data.partition.partition_indices` with the
    same parameters), in the same order, and their source ids
    (``source-ids.txt``): a run on the folders trains on the same data and
    dedupes exchanged samples the same way, so it gives the same accuracies.

    Parameters
    ----------
    data : ImageData
        The source dataset.
    partitioner, num_nodes, digits_per_node, alpha, seed
        As in :func:`flower_dl.data.partition.partition_indices` (run-config ``partitioner``,
        ``num-nodes``, ``digits-per-node``, ``dirichlet-alpha``, ``seed``).
    out_dir : str or os.PathLike
        Must not exist or be empty.
    layout : str
        ``"idx"`` or ``"png"``.
    source : str
        The source's name (e.g. ``"mnist-5k"``), recorded in the manifest.
    test : str
        ``"shared"`` (default): the whole source test set, once, as ``out_dir/test/``
        (the manifest's ``test-dir`` is ``out_dir``), which is what today's nodes
        evaluate on. ``"own"``: each node's folder holds the source test samples
        of the classes present in its training partition (a node then measures
        only the classes it knows).
    classes : sequence of str, optional
        Class names (written as ``classes.txt``); none: the dataset's own
        (:attr:`ImageData.classes`) when they are valid folder names, else
        ``0``..``C-1`` (``C = data.num_classes``); ``classes.txt`` is written
        unless the names are the digits 0-9 (the reader's default).

    Returns
    -------
    dict
        The manifest as written (see :func:`load_manifest`).
    """
    if layout not in LAYOUTS:
        raise DataError(f"split: layout {layout!r} is not known; allowed: {', '.join(LAYOUTS)}")
    if test not in TEST_SETS:
        raise DataError(f"split: test {test!r} is not known; allowed: {', '.join(TEST_SETS)}")
    out = _check_empty(out_dir, "split")
    names = _check_classes_arg(classes) if classes is not None else default_class_names(data)
    _check_layout_classes(layout, names, "split")
    named = names != DIGIT_CLASSES
    parts = partition_indices(
        data.train_labels, partitioner, num_nodes, digits_per_node=digits_per_node, alpha=alpha, seed=seed,
        num_classes=data.num_classes,
    )  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    nodes = []
    for pid, ids in enumerate(parts):
        labels = data.train_labels[ids]
        entry: dict[str, Any] = {
            "partition-id": pid,
            "folder": f"node-{pid}",
            "train-samples": len(ids),
            "train-per-class": _per_class(labels, len(names)),
        }
        test_images = test_labels = None
        if test == "own":
            keep = np.isin(data.test_labels, np.unique(labels))
            test_images, test_labels = data.test_images[keep], data.test_labels[keep]
            entry["test-samples"] = len(test_labels)
            entry["test-per-class"] = _per_class(test_labels, len(names))
        write_node_folder(
            out / entry["folder"], data.train_images[ids], labels, test_images, test_labels,
            layout=layout, classes=names if named else None, source_ids=ids,
        )  # fmt: skip
        nodes.append(entry)
    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "format-version": MANIFEST_VERSION,
        "source": source,
        "layout": layout,
        "classes": list(names),
        "num-nodes": num_nodes,
        "partitioner": partitioner,
        "digits-per-node": digits_per_node,
        "dirichlet-alpha": alpha,
        "seed": seed,
        "test": test,
        "data-dir": f"node-{PARTITION_ID}",
        "test-dir": "." if test == "shared" else "",
        "source-ids": SOURCE_IDS_FILE,
        "nodes": nodes,
    }
    if test == "shared":
        _write_shared_test(out, data, layout, names, named)
        manifest["test-samples"] = len(data.test_labels)
        manifest["test-per-class"] = _per_class(data.test_labels, len(names))
    atomic_write_text(out / MANIFEST_FILE, json.dumps(manifest, indent=2) + "\n")  # last: marks the split complete
    return manifest


def default_class_names(data: ImageData) -> tuple[str, ...]:
    """The names ``split`` gives the classes: the dataset's own if they can be folder names, else ``0``..``C-1``.

    CIFAR's names (``airplane``, ...) name the class folders of a png split;
    names that cannot (Fashion-MNIST's ``T-shirt/top``) give way to numbers,
    as the labels are.
    """
    if len(data.classes) == data.num_classes and not _bad_names(tuple(data.classes)):
        return tuple(data.classes)
    return tuple(str(c) for c in range(data.num_classes))


def _per_class(labels: np.ndarray, num_classes: int) -> list[int]:
    return np.bincount(labels, minlength=num_classes).tolist()


def _write_shared_test(out: Path, data: ImageData, layout: str, names: tuple[str, ...], named: bool) -> None:
    """The whole test set as ``out/test/`` (``t10k`` files or ``<class>/`` folders); ``classes.txt`` beside it."""
    labels = _check_arrays("test", data.test_images, data.test_labels, len(names), like=data.train_images)
    if named:
        atomic_write_text(out / CLASSES_FILE, "".join(f"{c}\n" for c in names))
    if layout == "idx":
        _staged(out / "test", lambda folder: _write_idx(folder, "test", data.test_images, labels))
    else:
        _staged(out / "test", lambda folder: _write_tree(folder, data.test_images, labels, names))


def load_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a split's ``manifest.json`` (``path``: the file or its folder).

    ``data-dir`` (a template with ``{partition-id}``) and ``test-dir`` are
    stored relative to the manifest's folder, so a split can be moved; they are
    returned absolute, ready for the run config (``test-dir`` stays ``""`` for
    ``test = "own"``).

    Raises
    ------
    DataError
        Missing or unreadable file, not a flower-dl split manifest, or a newer format version.
    """
    file = Path(path).expanduser()
    if file.is_dir():
        file = file / MANIFEST_FILE
    if not file.is_file():
        raise DataError(f"manifest: {str(file)!r} does not exist; a finished split writes {MANIFEST_FILE} last")
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"manifest: {str(file)!r} cannot be read as JSON ({err})") from err
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise DataError(f"manifest: {str(file)!r} is not a flower-dl split manifest (format {MANIFEST_FORMAT!r})")
    version = manifest.get("format-version")
    if version != MANIFEST_VERSION:
        raise DataError(
            f"manifest: {str(file)!r} has format-version {version!r}; this flower-dl reads {MANIFEST_VERSION}"
        )
    missing = [k for k in ("data-dir", "test-dir", "num-nodes", "nodes", "layout") if k not in manifest]
    if missing:
        raise DataError(f"manifest: {str(file)!r} lacks {', '.join(missing)}")
    base = file.parent.resolve()
    manifest["data-dir"] = str(base / manifest["data-dir"])
    manifest["test-dir"] = str((base / manifest["test-dir"]).resolve()) if manifest["test-dir"] else ""
    return manifest
