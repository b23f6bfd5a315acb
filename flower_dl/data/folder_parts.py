"""Reading the parts of a node folder: an IDX part, an image tree, the test part (see :mod:`flower_dl.data.folders`).

Each reader returns a :data:`Part`: the images, the labels, and the file that
shows the images' shape, so that a caller can name two files that differ.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from flower_dl.data.idx import IDX_FILES, read_idx
from flower_dl.data.images import NUM_CLASSES, DataError, describe_image, image_array, resize_images

DIGIT_CLASSES: tuple[str, ...] = tuple(str(c) for c in range(NUM_CLASSES))
CLASSES_FILE = "classes.txt"
ONE_SHAPE = (
    "a node's images (train and test together) must have one size and be all grayscale or all colour "
    "(image-size > 0 resizes them all to one size)"
)
"""What a folder that mixes sizes or modes is told."""

Part = tuple[np.ndarray, np.ndarray, str]
"""A part's images, labels, and the file that shows its images' shape (for an error naming two that differ)."""


def _idx_file(folder: Path, key: str) -> Path | None:
    """``folder``'s IDX file for ``key`` (a key of :data:`IDX_FILES`), plain preferred over ``.gz``."""
    for name in (IDX_FILES[key], IDX_FILES[key] + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def has_idx(folder: Path, part: str) -> bool:
    return any(_idx_file(folder, f"{part}_{what}") is not None for what in ("images", "labels"))


def read_test_part(root: Path, classes: tuple[str, ...], where: str, image_size: int) -> Part:
    """The test part of ``root``: ``t10k`` files at its root or in ``test/``, else the tree ``test/<class>/``."""
    for folder in (root, root / "test"):
        if has_idx(folder, "test"):
            prefix = "" if folder == root else "test/"
            return read_idx_part(folder, "test", len(classes), where, image_size, prefix=prefix)
    if (root / "test").is_dir():
        images, labels, first = read_tree(root / "test", "test", classes, where, image_size)
        if len(images) == 0:
            raise DataError(f"{where}: test/ holds no images")
        return images, labels, first
    raise DataError(
        f"{where}: holds no test data; expected test/<class>/ image folders or {IDX_FILES['test_images']}[.gz] "
        f"and {IDX_FILES['test_labels']}[.gz]; add them or give a test-dir"
    )


def read_idx_part(folder: Path, part: str, num_classes: int, where: str, image_size: int, *, prefix: str = "") -> Part:
    """The ``part`` (``train``/``test``) images and labels of an IDX folder, checked against each other.

    ``(n, H, W, 1)`` images are read as ``(n, H, W)``: one layout for grayscale.
    """
    paths = {}
    for what in ("images", "labels"):
        path = _idx_file(folder, f"{part}_{what}")
        if path is None:
            raise DataError(f"{where}: {prefix}{IDX_FILES[f'{part}_{what}']}[.gz] is missing")
        paths[what] = path
    images, labels = (_read_idx_checked(paths[w], prefix + paths[w].name, where) for w in ("images", "labels"))
    img_name, lbl_name = prefix + paths["images"].name, prefix + paths["labels"].name
    if images.ndim == 4 and images.shape[3] == 1:
        images = images[..., 0]
    if not (images.ndim == 3 or (images.ndim == 4 and images.shape[3] == 3)) or 0 in images.shape[1:]:
        raise DataError(
            f"{where}: {img_name} holds images of shape {images.shape[1:]}; allowed: (H, W) grayscale or "
            "(H, W, 3) colour"
        )
    if labels.ndim != 1:
        raise DataError(f"{where}: {lbl_name} has {labels.ndim} dimensions; a label file has 1")
    if len(images) != len(labels):
        raise DataError(
            f"{where}: {img_name} holds {len(images)} images but {lbl_name} holds {len(labels)} labels; "
            f"they must be equal"
        )
    labels = labels.astype(np.int64)
    if len(labels) and labels.max() >= num_classes:
        raise DataError(
            f"{where}: {lbl_name} holds label {int(labels.max())} but there are {num_classes} classes; "
            f"allowed: 0..{num_classes - 1}"
        )
    return resize_images(images, image_size), labels, img_name


def _read_idx_checked(path: Path, name: str, where: str) -> np.ndarray:
    try:
        return read_idx(path)
    except DataError as err:  # "data-dir: '<path>' <reason>": keep the reason, name the node and the file
        reason = str(err).replace(f"data-dir: {str(path)!r} ", "")
        raise DataError(f"{where}: {name} {reason}") from err
    except (OSError, EOFError) as err:  # unreadable, bad or truncated gzip
        raise DataError(f"{where}: {name} cannot be read ({err})") from err


def natural_key(name: str) -> tuple:
    """Sort key comparing digit runs as numbers (``img_9.png`` < ``img_10.png``)."""
    parts = re.split(r"(\d+)", name)
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts))


def _visible(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if not p.name.startswith(".")), key=lambda p: p.name)


def read_tree(part_dir: Path, part: str, classes: tuple[str, ...], where: str, image_size: int) -> Part:
    """Images and labels of ``part_dir/<class>/<file>``, in file-name order (see the module docstring).

    Every image must have the first one's shape (after ``image_size``): the
    first that differs is refused with the first file's name beside its own.
    """
    label_of = {name: i for i, name in enumerate(classes)}
    entries: list[tuple[tuple, int, str, Path]] = []
    for class_dir in _visible(part_dir):
        rel = f"{part}/{class_dir.name}"
        if not class_dir.is_dir():
            raise DataError(f"{where}: {rel} is not a class folder; {part}/ holds one folder per class")
        if class_dir.name not in label_of:
            source = CLASSES_FILE if classes != DIGIT_CLASSES else "folder names 0-9"
            raise DataError(f"{where}: {rel}/ is not a known class; allowed: {', '.join(classes)} ({source})")
        for path in _visible(class_dir):
            if path.is_dir():
                raise DataError(f"{where}: {rel}/{path.name}/ is a folder; a class folder holds only image files")
            entries.append((natural_key(path.name), label_of[class_dir.name], path.name, path))
    entries.sort(key=lambda e: e[:3])
    labels = np.asarray([e[1] for e in entries], dtype=np.int64)
    if not entries:
        return np.empty((0, 0, 0), dtype=np.uint8), labels, f"{part}/"
    rels = [f"{part}/{classes[label]}/{name}" for _, label, name, _ in entries]
    first = _read_image(entries[0][3], rels[0], where, image_size)
    images = np.empty((len(entries), *first.shape), dtype=np.uint8)
    images[0] = first
    for i in range(1, len(entries)):
        image = _read_image(entries[i][3], rels[i], where, image_size)
        if image.shape != first.shape:
            raise DataError(
                f"{where}: {rels[0]} is {describe_image(first.shape)} but {rels[i]} is "
                f"{describe_image(image.shape)}; {ONE_SHAPE}"
            )
        images[i] = image
    return images, labels, rels[0]


def _read_image(path: Path, rel: str, where: str, image_size: int) -> np.ndarray:
    """One image as ``uint8`` ``(H, W)`` or ``(H, W, 3)`` (:func:`flower_dl.data.images.image_array`)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            return image_array(img, image_size)
    except UnidentifiedImageError as err:
        raise DataError(f"{where}: {rel} is not a readable image (cannot identify image file)") from err
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(f"{where}: {rel} is not a readable image ({err})") from err
