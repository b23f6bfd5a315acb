"""Colour images at their own size and any class count: CIFAR batches, hf-disk, colour folders, tensors, splits.

CIFAR batches are written here in the real files' pickle layout and keys (no
copy of CIFAR can be installed offline); their pixels are random or planted.
"""

from __future__ import annotations

import dataclasses
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import flower_dl.data.hf_disk as hf_disk_module
from flower_dl.data.datasets import check_data_dir, fetch_dataset, load_dataset
from flower_dl.data.folder_writer import write_node_folder
from flower_dl.data.folders import load_node_folder
from flower_dl.data.images import CHANNEL_STATS, MEAN, STD, DataError, input_shape, normalisation, to_tensor
from flower_dl.data.partition import partition_indices, study_classes
from flower_dl.data.split import split

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def err(*parts: str) -> str:
    """A ``match=`` pattern requiring every part, in order."""
    return ".*".join(re.escape(p) for p in parts)


# ------------------------------------------------------------------ CIFAR files
def cifar_rows(images: np.ndarray) -> np.ndarray:
    """``(N, 32, 32, 3)`` -> the files' ``(N, 3072)``: the R plane, the G plane, the B plane, each row-major."""
    return images.transpose(0, 3, 1, 2).reshape(len(images), 3072)


def write_cifar10(root: Path, per_batch: int = 20, test: int = 20, seed: int = 0) -> dict[str, np.ndarray]:
    """``root/cifar-10-batches-py`` as torchvision unpacks it; returns the images and labels written."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    written: dict[str, list] = {"train_images": [], "train_labels": []}
    for i in range(1, 6):
        images = rng.integers(0, 256, (per_batch, 32, 32, 3), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch)
        batch = {b"batch_label": f"training batch {i} of 5".encode(), b"labels": labels.tolist(),
                 b"data": cifar_rows(images), b"filenames": [b"x.png"] * per_batch}  # fmt: skip
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch))
        written["train_images"].append(images)
        written["train_labels"].append(labels)
    test_images = rng.integers(0, 256, (test, 32, 32, 3), dtype=np.uint8)
    test_labels = rng.integers(0, 10, test)
    (folder / "test_batch").write_bytes(
        pickle.dumps(
            {
                b"batch_label": b"testing batch 1 of 1",
                b"labels": test_labels.tolist(),
                b"data": cifar_rows(test_images),
                b"filenames": [],
            }
        )
    )
    meta = {b"num_cases_per_batch": per_batch, b"label_names": [n.encode() for n in CIFAR10_NAMES], b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    return {
        "train_images": np.concatenate(written["train_images"]),
        "train_labels": np.concatenate(written["train_labels"]),
        "test_images": test_images,
        "test_labels": test_labels,
    }


def write_cifar100(root: Path, n_train: int = 40, n_test: int = 20, seed: int = 0) -> dict[str, np.ndarray]:
    """``root/cifar-100-python`` (``train``, ``test``, ``meta``, fine and coarse labels)."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    out = {}
    for part, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        fine = rng.integers(0, 100, n)
        batch = {b"filenames": [], b"batch_label": part.encode(), b"fine_labels": fine.tolist(),
                 b"coarse_labels": (fine // 5).tolist(), b"data": cifar_rows(images)}  # fmt: skip
        (folder / part).write_bytes(pickle.dumps(batch))
        out[f"{part}_images"], out[f"{part}_labels"] = images, fine
    names = [f"class_{i:02d}".encode() for i in range(100)]
    (folder / "meta").write_bytes(pickle.dumps({b"fine_label_names": names, b"coarse_label_names": [b"c"] * 20}))
    return out


def test_cifar10_batches_load_in_the_torchvision_root_layout(tmp_path) -> None:
    written = write_cifar10(tmp_path / "root")
    data = load_dataset("cifar10", str(tmp_path / "root"))
    assert data.train_images.shape == (100, 32, 32, 3) and data.train_images.dtype == np.uint8
    assert data.test_images.shape == (20, 32, 32, 3)
    assert data.train_labels.dtype == np.int64 and data.train_labels.tolist() == written["train_labels"].tolist()
    np.testing.assert_array_equal(data.train_images, written["train_images"])
    np.testing.assert_array_equal(data.test_images, written["test_images"])
    assert data.test_labels.tolist() == written["test_labels"].tolist()
    assert data.num_classes == 10 and data.classes == tuple(CIFAR10_NAMES)
    assert data.mean == (0.4914, 0.4822, 0.4465) and data.std == (0.2470, 0.2435, 0.2616)
    assert input_shape(data.train_images) == (3, 32, 32)
    # the batches' folder itself works as data-dir too
    again = load_dataset("cifar10", str(tmp_path / "root" / "cifar-10-batches-py"))
    np.testing.assert_array_equal(again.train_images, data.train_images)
    check_data_dir(tmp_path / "root", "cifar10")


def test_a_cifar_row_is_three_row_major_planes_red_green_blue(tmp_path) -> None:
    """A pixel planted in one plane of the file comes out at that [h, w, channel] of the array."""
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar10(tmp_path)
    path = folder / "data_batch_1"
    batch = pickle.loads(path.read_bytes())
    batch[b"data"][0] = 0
    batch[b"data"][0, 0 * 1024 + 1 * 32 + 2] = 200  # red plane, row 1, column 2
    batch[b"data"][0, 1 * 1024 + 3 * 32 + 4] = 150  # green plane, row 3, column 4
    batch[b"data"][0, 2 * 1024 + 31 * 32 + 0] = 100  # blue plane, row 31, column 0
    path.write_bytes(pickle.dumps(batch))
    image = load_dataset("cifar10", str(tmp_path)).train_images[0]
    assert image[1, 2].tolist() == [200, 0, 0]
    assert image[3, 4].tolist() == [0, 150, 0]
    assert image[31, 0].tolist() == [0, 0, 100]
    assert int(image.sum()) == 450


def test_cifar100_reads_the_fine_labels(tmp_path) -> None:
    written = write_cifar100(tmp_path / "root")
    data = load_dataset("cifar100", str(tmp_path / "root"))
    assert data.train_images.shape == (40, 32, 32, 3) and data.test_images.shape == (20, 32, 32, 3)
    np.testing.assert_array_equal(data.train_images, written["train_images"])
    assert data.train_labels.tolist() == written["train_labels"].tolist()
    assert data.num_classes == 100 and len(data.classes) == 100 and data.classes[7] == "class_07"
    assert (data.mean, data.std) == CHANNEL_STATS["cifar100"] == ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))


def test_a_data_dir_without_the_batches_is_named_with_the_files_missing(tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    message = err(f"data-dir: {str(tmp_path / 'empty')!r} holds no CIFAR-10 batches", "data_batch_1", "batches.meta")
    with pytest.raises(DataError, match=message):
        load_dataset("cifar10", str(tmp_path / "empty"))
    with pytest.raises(DataError, match=message):
        check_data_dir(tmp_path / "empty", "cifar10")
    write_cifar10(tmp_path / "partial")
    (tmp_path / "partial" / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataError, match=err("missing in cifar-10-batches-py/: data_batch_3 (the Python version")):
        load_dataset("cifar10", str(tmp_path / "partial"))
    with pytest.raises(DataError, match=err("holds no CIFAR-100 batches", "train, test, meta")):
        load_dataset("cifar100", str(tmp_path / "empty"))
    (tmp_path / "partial" / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match=err("data_batch_3' is not a readable CIFAR pickle")):
        load_dataset("cifar10", str(tmp_path / "partial"))


def test_cifar_offline_download_says_to_set_data_dir(monkeypatch) -> None:
    from torchvision import datasets

    def offline(*args, **kwargs):
        raise RuntimeError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(datasets, "CIFAR10", offline)
    with pytest.raises(
        DataError,
        match=err(
            "dataset: 'cifar10' with data-dir = '' must be downloaded",
            "name resolution",
            "set data-dir to a folder holding cifar-10-batches-py",
        ),
    ):
        load_dataset("cifar10")
    with pytest.raises(DataError, match=err("dataset: 'hf-disk' is not downloaded; set data-dir")):
        fetch_dataset("hf-disk")
    with pytest.raises(DataError, match=err("dataset: 'hf-disk' is not downloaded")):
        load_dataset("hf-disk")


def test_image_size_resizes_every_dataset_with_lanczos_and_must_not_be_negative(tmp_path) -> None:
    from PIL import Image

    written = write_cifar10(tmp_path)
    data = load_dataset("cifar10", str(tmp_path), image_size=16)
    assert data.train_images.shape == (100, 16, 16, 3) and data.mean == CHANNEL_STATS["cifar10"][0]
    expected = np.asarray(Image.fromarray(written["train_images"][3]).resize((16, 16), Image.Resampling.LANCZOS))
    np.testing.assert_array_equal(data.train_images[3], expected)
    assert load_dataset("mnist-5k", image_size=32).train_images.shape == (4000, 32, 32)
    with pytest.raises(DataError, match=err("image-size: -1 is not allowed; allowed: an integer >= 0")):
        load_dataset("cifar10", str(tmp_path), image_size=-1)


# ---------------------------------------------------------------------- hf-disk
def save_hf(folder: Path, splits: dict[str, tuple[list, list]], *, names: list[str] | None = None) -> None:
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, Value

    label = ClassLabel(names=names) if names else Value("int64")
    features = Features({"image": Image(), "label": label})
    DatasetDict(
        {s: Dataset.from_dict({"image": x, "label": y}, features=features) for s, (x, y) in splits.items()}
    ).save_to_disk(str(folder))


def rgb_images(n: int, shape=(12, 10), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *shape, 3), dtype=np.uint8)


def test_hf_disk_round_trip_of_rgb_images_and_a_class_label(tmp_path) -> None:
    from PIL import Image

    train, test = rgb_images(9), rgb_images(4, seed=1)
    save_hf(
        tmp_path / "hf",
        {"train": ([Image.fromarray(a) for a in train], [0, 1, 2] * 3), "test": ([Image.fromarray(a) for a in test], [2, 1, 0, 0])},
        names=["red", "green", "blue", "unused"],
    )  # fmt: skip
    check_data_dir(tmp_path / "hf", "hf-disk")
    data = load_dataset("hf-disk", str(tmp_path / "hf"))
    assert data.train_images.shape == (9, 12, 10, 3) and data.train_images.dtype == np.uint8
    np.testing.assert_array_equal(data.train_images, train)  # PNG: lossless
    np.testing.assert_array_equal(data.test_images, test)
    assert data.train_labels.tolist() == [0, 1, 2] * 3 and data.test_labels.dtype == np.int64
    assert data.num_classes == 4 and data.classes == ("red", "green", "blue", "unused")  # the ClassLabel's count
    assert data.mean == (0.5, 0.5, 0.5) and data.std == (0.5, 0.5, 0.5)
    resized = load_dataset("hf-disk", str(tmp_path / "hf"), image_size=8)
    assert resized.train_images.shape == (9, 8, 8, 3)


def test_hf_disk_grayscale_stays_grayscale_and_plain_int_labels_count_to_the_largest(tmp_path, monkeypatch) -> None:
    from PIL import Image

    gray = np.random.default_rng(0).integers(0, 256, (6, 7, 7), dtype=np.uint8)
    images = [Image.fromarray(a) for a in gray]
    save_hf(tmp_path / "hf", {"train": (images[:4], [0, 4, 1, 0]), "test": (images[4:], [1, 5])})
    data = load_dataset("hf-disk", str(tmp_path / "hf"))
    assert data.train_images.shape == (4, 7, 7) and data.mean == (MEAN,) and data.std == (STD,)
    np.testing.assert_array_equal(data.test_images, gray[4:])
    assert data.num_classes == 6 and data.classes == ()
    # decoded once: the next process reads the arrays back from the cache
    monkeypatch.setattr(hf_disk_module, "_decode_hf_disk", lambda *a: pytest.fail("decoded again although cached"))
    np.testing.assert_array_equal(load_dataset("hf-disk", str(tmp_path / "hf")).train_images, gray[:4])


def test_hf_disk_errors_name_the_key_and_what_is_there(tmp_path) -> None:
    from datasets import Dataset
    from PIL import Image

    images = [Image.fromarray(a) for a in rgb_images(4)]
    save_hf(tmp_path / "hf", {"train": (images[:2], [0, 1]), "test": (images[2:], [1, 0])}, names=["a", "b"])
    with pytest.raises(
        DataError, match=err("image-column: 'img' is not a column", "train split; its columns: image, label")
    ):
        load_dataset("hf-disk", str(tmp_path / "hf"), image_column="img")
    with pytest.raises(DataError, match=err("label-column: 'fine' is not a column", "columns: image, label")):
        load_dataset("hf-disk", str(tmp_path / "hf"), label_column="fine")
    save_hf(tmp_path / "no-test", {"train": (images[:2], [0, 1]), "validation": (images[2:], [1, 0])})
    with pytest.raises(
        DataError, match=err("has the splits train, validation; hf-disk needs train and test (missing test)")
    ):
        load_dataset("hf-disk", str(tmp_path / "no-test"))
    Dataset.from_dict({"label": [0]}).save_to_disk(str(tmp_path / "single"))
    with pytest.raises(DataError, match=err("is not a DatasetDict saved with save_to_disk", "it holds one Dataset")):
        load_dataset("hf-disk", str(tmp_path / "single"))
    mixed = [Image.fromarray(a) for a in (*rgb_images(2), *rgb_images(1, shape=(8, 8)))]
    save_hf(tmp_path / "mixed", {"train": (mixed[:2], [0, 1]), "test": (mixed[2:], [0])})
    with pytest.raises(
        DataError, match=err("'image' train row 0 is RGB 10 wide x 12 high but test row 0 is RGB 8 wide x 8 high")
    ):
        load_dataset("hf-disk", str(tmp_path / "mixed"))
    assert load_dataset("hf-disk", str(tmp_path / "mixed"), image_size=6).test_images.shape == (1, 6, 6, 3)


# ---------------------------------------------------------------- colour folders
def save_png(path: Path, image) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def test_a_colour_png_tree_keeps_rgb_and_its_size(tmp_path) -> None:
    from PIL import Image

    train, test = rgb_images(3, shape=(20, 30)), rgb_images(2, shape=(20, 30), seed=1)
    for i, a in enumerate(train):
        save_png(tmp_path / "n" / "train" / str(i % 2) / f"{i}.png", Image.fromarray(a))
    for i, a in enumerate(test):
        save_png(tmp_path / "n" / "test" / "1" / f"{i}.png", Image.fromarray(a))
    got = load_node_folder(tmp_path / "n", node=0)
    assert got.train_images.shape == (3, 20, 30, 3)
    np.testing.assert_array_equal(got.train_images, train)
    np.testing.assert_array_equal(got.test_images, test)
    assert got.train_labels.tolist() == [0, 1, 0] and got.num_classes == 10
    view = got.image_data()
    assert view.num_classes == 10 and view.mean == (0.5,) * 3 and view.std == (0.5,) * 3
    assert view.classes == tuple(str(c) for c in range(10))
    small = load_node_folder(tmp_path / "n", node=0, image_size=8)
    expected = np.asarray(Image.fromarray(train[1]).resize((8, 8), Image.Resampling.LANCZOS))
    assert small.train_images.shape == (3, 8, 8, 3)
    np.testing.assert_array_equal(small.train_images[1], expected)
    with pytest.raises(DataError, match=err("image-size: -2 is not allowed")):
        load_node_folder(tmp_path / "n", node=0, image_size=-2)


def test_grayscale_modes_stay_grayscale_and_colour_modes_become_rgb(tmp_path) -> None:
    from PIL import Image

    gray = np.arange(16, dtype=np.uint8).reshape(4, 4) * 16
    # grayscale: L as it is, LA without alpha, 16-bit scaled to 8 bits, 1 as 0/255
    save_png(tmp_path / "g" / "train" / "0" / "a.png", Image.fromarray(gray))
    save_png(tmp_path / "g" / "train" / "1" / "b.png", Image.fromarray(gray).convert("LA"))
    save_png(tmp_path / "g" / "train" / "2" / "c.png", Image.fromarray(gray.astype(np.uint16) * 257))
    save_png(tmp_path / "g" / "test" / "3" / "d.png", Image.fromarray(gray > 100))
    got = load_node_folder(tmp_path / "g", node=0)
    assert got.train_images.shape == (3, 4, 4) and got.image_data().mean == (MEAN,)
    for image in got.train_images:
        np.testing.assert_array_equal(image, gray)
    np.testing.assert_array_equal(got.test_images[0], np.where(gray > 100, 255, 0))
    # colour: RGBA loses its alpha, a palette image is expanded
    rgb = rgb_images(1, shape=(4, 4))[0]
    save_png(tmp_path / "c" / "train" / "0" / "a.png", Image.fromarray(np.dstack([rgb, np.full((4, 4), 7, np.uint8)])))
    palette = Image.fromarray(rgb).quantize(8)
    save_png(tmp_path / "c" / "train" / "1" / "b.png", palette)
    save_png(tmp_path / "c" / "test" / "0" / "c.png", Image.fromarray(rgb))
    got = load_node_folder(tmp_path / "c", node=0)
    assert got.train_images.shape == (2, 4, 4, 3)
    np.testing.assert_array_equal(got.train_images[0], rgb)
    np.testing.assert_array_equal(got.train_images[1], np.asarray(palette.convert("RGB")))


def test_mixed_sizes_or_modes_in_one_folder_are_refused_naming_two_files(tmp_path) -> None:
    from PIL import Image

    save_png(tmp_path / "n" / "train" / "0" / "1.png", Image.new("RGB", (28, 28)))
    save_png(tmp_path / "n" / "train" / "1" / "2.png", Image.new("RGB", (32, 28)))
    save_png(tmp_path / "n" / "test" / "0" / "3.png", Image.new("RGB", (28, 28)))
    with pytest.raises(
        DataError,
        match=err(
            "node 4: data-dir", "train/0/1.png is RGB 28 wide x 28 high but train/1/2.png is RGB 32 wide x 28 high"
        ),
    ):
        load_node_folder(tmp_path / "n", node=4)
    assert load_node_folder(tmp_path / "n", node=4, image_size=28).train_images.shape == (2, 28, 28, 3)
    save_png(tmp_path / "n" / "train" / "1" / "2.png", Image.new("L", (28, 28)))
    with pytest.raises(DataError, match=err("train/0/1.png is RGB 28 wide x 28 high but train/1/2.png is grayscale")):
        load_node_folder(tmp_path / "n", node=4, image_size=28)  # resizing makes sizes alike, not modes
    save_png(tmp_path / "n" / "train" / "1" / "2.png", Image.new("RGB", (28, 28)))
    save_png(tmp_path / "n" / "test" / "0" / "3.png", Image.new("L", (28, 28)))
    with pytest.raises(DataError, match=err("train/0/1.png is RGB 28 wide x 28 high but test/0/3.png is grayscale")):
        load_node_folder(tmp_path / "n", node=4)


def test_a_classes_txt_with_twelve_classes_works(tmp_path) -> None:
    names = [f"kind-{i}" for i in range(12)]
    rng = np.random.default_rng(0)
    labels = np.arange(24) % 12
    images = rng.integers(0, 256, (24, 9, 9, 3), dtype=np.uint8)
    for layout in ("png", "idx"):
        write_node_folder(tmp_path / layout, images, labels, images[:12], labels[:12], layout=layout, classes=names)
        got = load_node_folder(tmp_path / layout, node=0)
        assert got.classes == tuple(names) and got.num_classes == 12 and got.image_data().num_classes == 12
        assert got.train_labels.tolist() == labels.tolist()
        np.testing.assert_array_equal(got.train_images, images)
    assert (tmp_path / "png" / "train" / "kind-11").is_dir()


# ----------------------------------------------------------------------- tensors
def test_to_tensor_is_bitwise_the_studys_for_grayscale() -> None:
    images = np.random.default_rng(0).integers(0, 256, (50, 28, 28), dtype=np.uint8)
    old = torch.from_numpy(np.ascontiguousarray(images)).to(torch.float32).div_(255.0)
    old = old.sub_(0.1307).div_(0.3081).unsqueeze(1)
    for new in (to_tensor(images), to_tensor(images, (MEAN,), (STD,)), to_tensor(images, *normalisation("mnist", 1))):
        assert new.dtype == torch.float32 and tuple(new.shape) == (50, 1, 28, 28)
        assert torch.equal(new, old)
        assert new.numpy().tobytes() == old.numpy().tobytes()


def test_to_tensor_normalises_colour_per_channel() -> None:
    images = rgb_images(5, shape=(6, 7))
    mean, std = CHANNEL_STATS["cifar10"]
    x = to_tensor(images, mean, std)
    assert tuple(x.shape) == (5, 3, 6, 7) and x.dtype == torch.float32 and x.is_contiguous()
    expected = (images.astype(np.float64) / 255 - np.array(mean)) / np.array(std)
    np.testing.assert_allclose(x.numpy(), expected.transpose(0, 3, 1, 2), rtol=0, atol=1e-5)
    assert float(x[2, 1, 3, 4]) == pytest.approx((images[2, 3, 4, 1] / 255 - mean[1]) / std[1], abs=1e-5)
    assert input_shape(images) == (3, 6, 7) and input_shape(images[..., 0]) == (1, 6, 7)
    with pytest.raises(DataError, match=err("2 means and 2 stds for 3 channels")):
        to_tensor(images, (0.5, 0.5), (0.5, 0.5))


def test_normalisation_of_each_kind_of_data() -> None:
    assert normalisation("mnist", 1) == normalisation("folder", 1) == normalisation("hf-disk", 1) == ((MEAN,), (STD,))
    assert normalisation("cifar10", 3) == ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
    assert normalisation("folder", 3) == normalisation("hf-disk", 3) == ((0.5,) * 3, (0.5,) * 3)


# -------------------------------------------------------------- partitioning
def test_partitioners_work_on_a_hundred_classes() -> None:
    labels = np.repeat(np.arange(100), 6)
    parts = partition_indices(labels, "digits-per-node", 7, digits_per_node=5, num_classes=100)
    for node, part in enumerate(parts):
        classes = study_classes(node, 7, 5, 100)
        assert len(classes) == 5 and sorted(set(labels[part].tolist())) == classes
        assert len(part) == 5 * 6
    disjoint = partition_indices(labels, "digits-per-node-disjoint", 7, digits_per_node=5, num_classes=100, seed=1)
    for node, part in enumerate(disjoint):
        assert sorted(set(labels[part].tolist())) == study_classes(node, 7, 5, 100)
    everything = np.concatenate(disjoint)
    assert len(everything) == len(set(everything.tolist()))
    # a class without samples (a small test set of CIFAR-100) gives its nodes nothing, not an error
    sparse = partition_indices(labels[labels < 50], "digits-per-node-disjoint", 7, digits_per_node=5, num_classes=100)
    assert all(set(labels[p].tolist()) <= set(range(50)) for p in sparse)


def test_ten_classes_partition_as_before_and_bad_k_is_refused() -> None:
    labels = np.random.default_rng(0).integers(0, 10, 500)
    for name in ("digits-per-node", "digits-per-node-disjoint", "iid", "dirichlet"):
        default = partition_indices(labels, name, 5, digits_per_node=3, seed=2)
        explicit = partition_indices(labels, name, 5, digits_per_node=3, seed=2, num_classes=10)
        assert all(np.array_equal(a, b) for a, b in zip(default, explicit))
    with pytest.raises(DataError, match=err("digits-per-node: 11 is out of range; allowed: 1..10")):
        partition_indices(labels, "digits-per-node", 5, digits_per_node=11)
    with pytest.raises(DataError, match=err("digits-per-node: 0 is out of range; allowed: 1..10")):
        partition_indices(labels, "digits-per-node-disjoint", 5, digits_per_node=0)
    partition_indices(labels, "iid", 5, digits_per_node=11)  # k is only the label-skew partitioners'
    with pytest.raises(DataError, match=err("labels span 0..9 but there are 5 classes")):
        partition_indices(labels, "iid", 5, num_classes=5)


# ------------------------------------------------------------------------ split
@pytest.mark.parametrize("layout", ["png", "idx"])
def test_split_writes_colour_folders_that_read_back_identically(tmp_path, layout) -> None:
    write_cifar10(tmp_path / "cifar", per_batch=12, test=15)
    data = load_dataset("cifar10", str(tmp_path / "cifar"))
    out = tmp_path / "split"
    manifest = split(
        data, partitioner="digits-per-node", num_nodes=3, digits_per_node=4, out_dir=out, layout=layout,
        source="cifar10",
    )  # fmt: skip
    assert manifest["classes"] == CIFAR10_NAMES and (out / "classes.txt").read_text().split() == CIFAR10_NAMES
    parts = partition_indices(data.train_labels, "digits-per-node", 3, digits_per_node=4)
    for pid in range(3):
        got = load_node_folder(out / f"node-{pid}", node=pid, test_dir=str(out))
        ids = parts[pid]
        np.testing.assert_array_equal(got.train_images, data.train_images[ids])
        np.testing.assert_array_equal(got.train_labels, data.train_labels[ids])
        np.testing.assert_array_equal(got.test_images, data.test_images)
        np.testing.assert_array_equal(got.source_ids, ids)
        assert got.classes == tuple(CIFAR10_NAMES) and got.train_images.shape[1:] == (32, 32, 3)
    if layout == "png":
        from PIL import Image

        first = next((out / "node-0" / "train").rglob("*.png"))
        assert first.parent.name in CIFAR10_NAMES and Image.open(first).mode == "RGB"


def test_split_of_a_hundred_classes_names_them_by_number(tmp_path) -> None:
    write_cifar100(tmp_path / "c", n_train=300, n_test=30)
    data = load_dataset("cifar100", str(tmp_path / "c"))
    data = dataclasses.replace(data, classes=())  # names unknown: 0..99
    out = tmp_path / "split"
    split(data, partitioner="iid", num_nodes=2, out_dir=out, layout="idx", source="x", test="own")
    assert (out / "node-0" / "classes.txt").read_text().split() == [str(c) for c in range(100)]
    got = load_node_folder(out / "node-0", node=0)
    assert got.num_classes == 100 and got.train_images.shape[1:] == (32, 32, 3)
