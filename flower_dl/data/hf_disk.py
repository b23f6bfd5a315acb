"""``hf-disk``: a Hugging Face ``DatasetDict`` saved with ``save_to_disk``, its ``train`` and ``test`` splits."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from flower_dl.data.cache import decoded
from flower_dl.data.images import DataError, ImageData, describe_image, image_array

HF_SPLITS = ("train", "test")


def hf_splits(data_dir: str | os.PathLike[str]) -> list[str]:
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
    in Python is slow, so the arrays are cached (:func:`flower_dl.data.cache.decoded`, keyed by
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
    hf_splits(data_dir)
    root = Path(data_dir).expanduser()
    sources = sorted(p for p in root.rglob("*") if p.is_file())
    kind = f"hf-disk image-column={image_column!r} label-column={label_column!r} image-size={image_size}"
    return decoded(kind, sources, lambda: _decode_hf_disk(data_dir, image_column, label_column, image_size))


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
