"""A user's own data as a Hugging Face dataset on disk: ``dataset = "hf-disk"``, ``data-dir`` = the folder.

``python my_data.py arrays.npz out/`` turns arrays (``train_images``
``(n, H, W, 3)`` or ``(n, H, W)`` uint8, ``train_labels``, ``test_images``,
``test_labels``) into what flwr-datasets users hold: a ``DatasetDict`` with
``train`` and ``test`` splits, an ``image`` column and a ``label`` column
(a ``ClassLabel``, whose names flower-dl reports), saved with
``save_to_disk``. A dataset already on the Hub works the same way once saved:
``load_dataset(name).save_to_disk(folder)``.
"""

import sys

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image


def save_as_hf(arrays: dict, class_names: list, folder: str) -> None:
    """Save train and test images and labels as a DatasetDict at ``folder``."""
    features = Features({"image": Image(), "label": ClassLabel(names=class_names)})
    splits = {
        split: Dataset.from_dict(
            {"image": list(arrays[f"{split}_images"]), "label": arrays[f"{split}_labels"].tolist()},
            features=features,
        )
        for split in ("train", "test")
    }
    DatasetDict(splits).save_to_disk(folder)


if __name__ == "__main__":
    source, target = sys.argv[1], sys.argv[2]
    with np.load(source) as npz:
        data = {key: npz[key] for key in npz.files}
    names = [str(c) for c in range(int(data["train_labels"].max()) + 1)]
    save_as_hf(data, names, target)
