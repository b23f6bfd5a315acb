"""Node folders (``dataset = "folder"``): round trips, ``split`` against the partitioner, and every bad input."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pytest

from flower_dl.data import datasets as data
from flower_dl.data import folders
from flower_dl.data.folder_writer import idx_bytes, write_node_folder
from flower_dl.data.folders import FolderData, data_dir_for, exchange_ids, load_node_folder, resolve_data_dir
from flower_dl.data.idx import IDX_FILES
from flower_dl.data.images import DataError
from flower_dl.data.split import load_manifest, split

K, NODES = 2, 5


def synthetic(n_train: int = 23, n_test: int = 11, num_classes: int = 10, seed: int = 0):
    """Random images, labels in shuffled (not class-sorted) order: order mistakes show."""
    rng = np.random.default_rng(seed)
    return (
        rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        rng.integers(0, num_classes, n_train).astype(np.int64),
        rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        rng.integers(0, num_classes, n_test).astype(np.int64),
    )


def assert_same(folder: FolderData, arrays) -> None:
    train_x, train_y, test_x, test_y = arrays
    np.testing.assert_array_equal(folder.train_images, train_x)
    np.testing.assert_array_equal(folder.train_labels, train_y)
    np.testing.assert_array_equal(folder.test_images, test_x)
    np.testing.assert_array_equal(folder.test_labels, test_y)
    assert folder.train_images.dtype == np.uint8 and folder.train_labels.dtype == np.int64
    np.testing.assert_array_equal(folder.source_index, np.arange(len(train_y)))


def err(*parts: str) -> str:
    """A ``match=`` pattern requiring every part, in order."""
    return ".*".join(re.escape(p) for p in parts)


# ------------------------------------------------------------------ round trips
@pytest.mark.parametrize("layout", folders.LAYOUTS)
def test_round_trip_gives_identical_arrays_and_order(tmp_path, layout):
    arrays = synthetic()
    ids = np.arange(100, 123, dtype=np.int64)[::-1].copy()
    write_node_folder(tmp_path / "n", *arrays, layout=layout, source_ids=ids)
    got = load_node_folder(tmp_path / "n", node=0)
    assert_same(got, arrays)
    assert got.layout == layout and got.classes == folders.DIGIT_CLASSES
    np.testing.assert_array_equal(got.source_ids, ids)
    np.testing.assert_array_equal(exchange_ids(got, 3), ids)


def test_png_files_are_named_by_position_under_their_label(tmp_path):
    arrays = synthetic(n_train=3)
    arrays[1][:] = [4, 0, 4]
    write_node_folder(tmp_path / "n", *arrays, layout="png")
    files = sorted(p.relative_to(tmp_path / "n").as_posix() for p in (tmp_path / "n" / "train").rglob("*.png"))
    assert files == ["train/0/00001.png", "train/4/00000.png", "train/4/00002.png"]


def test_idx_is_written_plain_and_gzipped_idx_reads_the_same(tmp_path):
    arrays = synthetic()
    write_node_folder(tmp_path / "n", *arrays, layout="idx")
    assert sorted(p.name for p in (tmp_path / "n").iterdir()) == sorted(IDX_FILES.values())
    for path in (tmp_path / "n").iterdir():  # gzip every file: still the same data
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(path.read_bytes()))
        path.unlink()
    assert_same(load_node_folder(tmp_path / "n", node=0), arrays)


def test_folder_names_0_to_9_are_the_labels_and_files_sort_naturally(tmp_path):
    from PIL import Image

    root = tmp_path / "n"
    # written by hand: 10.png after 9.png (natural sort), same names in two classes ordered by class
    plan = [("train/3/img_9.png", 1), ("train/3/img_10.png", 2), ("train/7/img_9.png", 3), ("test/0/a.png", 4)]
    for rel, value in plan:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((28, 28), value, dtype=np.uint8)).save(root / rel)
    got = load_node_folder(root, node=1)
    assert got.train_labels.tolist() == [3, 7, 3]
    assert got.train_images[:, 0, 0].tolist() == [1, 3, 2]
    assert got.test_labels.tolist() == [0] and got.source_ids is None
    np.testing.assert_array_equal(exchange_ids(got, 1), (2 << 32) + np.arange(3))


def test_classes_txt_names_are_labels_by_line_index(tmp_path):
    names = ["cat", "dog", "bird"]
    arrays = synthetic(num_classes=3)
    write_node_folder(tmp_path / "n", *arrays, layout="png", classes=names)
    assert (tmp_path / "n" / "classes.txt").read_text() == "cat\ndog\nbird\n"
    assert {p.name for p in (tmp_path / "n" / "train").iterdir()} <= set(names)
    got = load_node_folder(tmp_path / "n", node=0)
    assert got.classes == tuple(names)
    assert_same(got, arrays)


def test_images_keep_their_size_and_a_test_dir_of_another_mode_is_refused(tmp_path):
    """Once resized to 28x28 grayscale, now kept as they are; the shared test set must then be alike."""
    from PIL import Image

    path = tmp_path / "n" / "train" / "5" / "big.png"
    path.parent.mkdir(parents=True)
    Image.new("RGB", (56, 40), (255, 255, 255)).save(path)
    (tmp_path / "t" / "test" / "5").mkdir(parents=True)
    Image.new("L", (28, 28), 0).save(tmp_path / "t" / "test" / "5" / "x.png")
    with pytest.raises(
        DataError,
        match=err(
            "node 0: data-dir", "train/5/big.png is RGB 56 wide x 40 high but test-dir",
            "test/5/x.png is grayscale 28 wide x 28 high", "must have one size",
        ),
    ):  # fmt: skip
        load_node_folder(tmp_path / "n", node=0, test_dir=str(tmp_path / "t"))
    Image.new("RGB", (56, 40), (0, 0, 0)).save(tmp_path / "t" / "test" / "5" / "x.png")
    got = load_node_folder(tmp_path / "n", node=0, test_dir=str(tmp_path / "t"))
    assert got.train_images.shape == (1, 40, 56, 3) and (got.train_images == 255).all()
    assert got.test_images.shape == (1, 40, 56, 3) and got.test_labels.tolist() == [5]


def test_test_dir_replaces_the_nodes_own_test_set(tmp_path):
    own, shared = synthetic(seed=1), synthetic(seed=2)
    write_node_folder(tmp_path / "n", *own, layout="png")
    write_node_folder(tmp_path / "t", *shared, layout="idx")
    got = load_node_folder(tmp_path / "n", node=0, test_dir=str(tmp_path / "t"))
    assert_same(got, (own[0], own[1], shared[2], shared[3]))


def test_image_data_view(tmp_path):
    arrays = synthetic()
    write_node_folder(tmp_path / "n", *arrays, layout="idx")
    view = load_node_folder(tmp_path / "n", node=0).image_data()
    assert isinstance(view, data.ImageData)
    np.testing.assert_array_equal(view.train_images, arrays[0])


# ------------------------------------------------------------------------ split
@pytest.fixture(scope="module")
def mnist_5k() -> data.ImageData:
    return data.load_dataset("mnist-5k")


@pytest.fixture(scope="module")
def parts(mnist_5k) -> list[np.ndarray]:
    return data.partition_indices(mnist_5k.train_labels, "digits-per-node", NODES, digits_per_node=K)


@pytest.mark.parametrize("layout", folders.LAYOUTS)
def test_split_gives_each_node_its_partition_in_order(tmp_path, mnist_5k, parts, layout):
    out = tmp_path / "split"
    written = split(
        mnist_5k, partitioner="digits-per-node", num_nodes=NODES, digits_per_node=K, seed=0,
        out_dir=out, layout=layout, source="mnist-5k",
    )  # fmt: skip
    manifest = load_manifest(out)
    assert json.loads((out / "manifest.json").read_text()) == written
    assert manifest["test"] == "shared" and manifest["test-dir"] == str(out.resolve())
    assert manifest["source"] == "mnist-5k" and manifest["layout"] == layout and manifest["num-nodes"] == NODES
    assert manifest["partitioner"] == "digits-per-node" and manifest["digits-per-node"] == K
    assert manifest["test-per-class"] == np.bincount(mnist_5k.test_labels, minlength=10).tolist()
    for pid in range(NODES):
        ids = parts[pid]
        node_dir = data_dir_for(manifest["data-dir"], pid, NODES)
        assert node_dir == str(out.resolve() / f"node-{pid}")
        got = load_node_folder(node_dir, node=pid, test_dir=manifest["test-dir"])
        assert_same(
            got, (mnist_5k.train_images[ids], mnist_5k.train_labels[ids], mnist_5k.test_images, mnist_5k.test_labels)
        )
        np.testing.assert_array_equal(got.source_ids, ids)
        entry = manifest["nodes"][pid]
        assert entry["partition-id"] == pid and entry["train-samples"] == len(ids)
        assert entry["train-per-class"] == np.bincount(mnist_5k.train_labels[ids], minlength=10).tolist()
        present = [c for c, n in enumerate(entry["train-per-class"]) if n]
        assert present == data.study_classes(pid, NODES, K)
    with pytest.raises(
        DataError, match=err(f"split: output folder {str(out)!r} is not empty; choose an empty or new folder")
    ):
        split(mnist_5k, partitioner="iid", num_nodes=2, out_dir=out, layout=layout, source="mnist-5k")


def test_split_own_test_holds_the_nodes_classes(tmp_path, mnist_5k, parts):
    out = tmp_path / "own"
    manifest = split(
        mnist_5k, partitioner="digits-per-node", num_nodes=NODES, digits_per_node=K, seed=0,
        out_dir=out, layout="idx", source="mnist-5k", test="own",
    )  # fmt: skip
    assert manifest["test-dir"] == "" and not (out / "test").exists()
    for pid in (0, 3):
        got = load_node_folder(out / f"node-{pid}", node=pid)
        keep = np.isin(mnist_5k.test_labels, np.unique(mnist_5k.train_labels[parts[pid]]))
        np.testing.assert_array_equal(got.test_images, mnist_5k.test_images[keep])
        assert manifest["nodes"][pid]["test-samples"] == int(keep.sum())


def test_split_refuses_bad_choices_before_writing(tmp_path, mnist_5k):
    with pytest.raises(DataError, match=err("split: layout 'jpg' is not known; allowed: idx, png")):
        split(mnist_5k, partitioner="iid", num_nodes=2, out_dir=tmp_path / "a", layout="jpg", source="x")
    with pytest.raises(DataError, match=err("split: test 'all' is not known; allowed: shared, own")):
        split(mnist_5k, partitioner="iid", num_nodes=2, out_dir=tmp_path / "a", layout="idx", source="x", test="all")
    assert not (tmp_path / "a").exists()


def test_write_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "n").mkdir()
    (tmp_path / "n" / "x").write_text("keep me")
    with pytest.raises(DataError, match=err(f"output folder {str(tmp_path / 'n')!r} is not empty")):
        write_node_folder(tmp_path / "n", *synthetic(), layout="idx")
    assert [p.name for p in tmp_path.iterdir()] == ["n"]  # no staging folder left behind


# --------------------------------------------------------------------- manifest
def test_load_manifest_errors(tmp_path):
    with pytest.raises(DataError, match=err("manifest:", "manifest.json", "does not exist")):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(DataError, match=err("manifest:", "cannot be read as JSON")):
        load_manifest(tmp_path / "manifest.json")
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "flower-dl-split", "format-version": 9}))
    with pytest.raises(DataError, match=err("has format-version 9; this flower-dl reads 1")):
        load_manifest(tmp_path)


# ------------------------------------------------------------------- bad inputs
@pytest.fixture
def png_node(tmp_path) -> Path:
    write_node_folder(tmp_path / "node-3", *synthetic(), layout="png")
    return tmp_path / "node-3"


@pytest.fixture
def idx_node(tmp_path) -> Path:
    write_node_folder(tmp_path / "node-3", *synthetic(), layout="idx")
    return tmp_path / "node-3"


def where(path: Path) -> str:
    return f"node 3: data-dir {str(path)!r}"


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match=err(where(tmp_path / "nope"), "does not exist or is not a folder")):
        load_node_folder(tmp_path / "nope", node=3)


def test_empty_folder_and_no_train_data(tmp_path):
    (tmp_path / "e").mkdir()
    with pytest.raises(DataError, match=err(where(tmp_path / "e"), "is empty")):
        load_node_folder(tmp_path / "e", node=3)
    (tmp_path / "e" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=err(where(tmp_path / "e"), "holds no training data", "train/<class>/")):
        load_node_folder(tmp_path / "e", node=3)
    (tmp_path / "e" / "train").mkdir()
    with pytest.raises(DataError, match=err(where(tmp_path / "e"), "train/ holds no images")):
        load_node_folder(tmp_path / "e", node=3)


def test_label_folder_outside_the_digits(png_node):
    (png_node / "train" / "11").mkdir()
    with pytest.raises(DataError, match=err(where(png_node), "train/11/ is not a known class; allowed: 0, 1")):
        load_node_folder(png_node, node=3)


def test_label_folder_not_in_classes_txt(tmp_path):
    write_node_folder(tmp_path / "node-3", *synthetic(num_classes=2), layout="png", classes=["cat", "dog"])
    (tmp_path / "node-3" / "train" / "cow").mkdir()
    with pytest.raises(DataError, match=err("train/cow/ is not a known class; allowed: cat, dog (classes.txt)")):
        load_node_folder(tmp_path / "node-3", node=3)


def test_corrupt_png_is_named(png_node):
    bad = next((png_node / "train").rglob("*.png"))
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8).tobytes())
    rel = bad.relative_to(png_node).as_posix()
    with pytest.raises(
        DataError, match=err(where(png_node), f"{rel} is not a readable image (cannot identify image file)")
    ):
        load_node_folder(png_node, node=3)


def test_truncated_png_is_named(png_node):
    bad = next((png_node / "test").rglob("*.png"))
    bad.write_bytes(bad.read_bytes()[:60])
    rel = bad.relative_to(png_node).as_posix()
    with pytest.raises(DataError, match=err(where(png_node), f"{rel} is not a readable image")):
        load_node_folder(png_node, node=3)


def test_stray_file_and_nested_folder_in_the_tree(png_node):
    (png_node / "train" / "README").write_text("x")
    with pytest.raises(DataError, match=err(where(png_node), "train/README is not a class folder")):
        load_node_folder(png_node, node=3)
    (png_node / "train" / "README").unlink()
    (png_node / "train" / "4" / "more").mkdir(parents=True, exist_ok=True)
    with pytest.raises(DataError, match=err(where(png_node), "train/4/more/ is a folder")):
        load_node_folder(png_node, node=3)


def test_hidden_files_are_ignored(png_node):
    (png_node / "train" / ".DS_Store").write_text("x")
    (png_node / "train" / "2").mkdir(exist_ok=True)
    (png_node / "train" / "2" / ".00001.png.tmp").write_text("x")
    assert len(load_node_folder(png_node, node=3).train_labels) == 23


def test_idx_lengths_differ(idx_node):
    labels = idx_node / IDX_FILES["train_labels"]
    labels.write_bytes(idx_bytes(np.zeros(5, dtype=np.uint8)))
    with pytest.raises(
        DataError,
        match=err(
            where(idx_node), "train-images-idx3-ubyte holds 23 images but train-labels-idx1-ubyte holds 5 labels"
        ),
    ):
        load_node_folder(idx_node, node=3)


def test_idx_missing_truncated_and_wrong_shape(idx_node):
    (idx_node / IDX_FILES["train_labels"]).unlink()
    with pytest.raises(DataError, match=err(where(idx_node), "train-labels-idx1-ubyte[.gz] is missing")):
        load_node_folder(idx_node, node=3)
    (idx_node / IDX_FILES["train_labels"]).write_bytes(idx_bytes(np.zeros(23, dtype=np.uint8))[:-3])
    with pytest.raises(DataError, match=err(where(idx_node), "train-labels-idx1-ubyte is truncated")):
        load_node_folder(idx_node, node=3)
    (idx_node / IDX_FILES["train_labels"]).write_bytes(b"not an idx file")
    with pytest.raises(DataError, match=err(where(idx_node), "train-labels-idx1-ubyte is not an IDX file")):
        load_node_folder(idx_node, node=3)
    (idx_node / IDX_FILES["train_labels"]).write_bytes(idx_bytes(np.zeros(2, dtype=np.uint8)))
    (idx_node / IDX_FILES["train_images"]).write_bytes(idx_bytes(np.zeros((2, 32, 32, 2), dtype=np.uint8)))
    with pytest.raises(
        DataError,
        match=err(where(idx_node), "train-images-idx3-ubyte holds images of shape (32, 32, 2); allowed: (H, W)"),
    ):
        load_node_folder(idx_node, node=3)
    # 32x32 is allowed now, but not beside 28x28 test images
    (idx_node / IDX_FILES["train_images"]).write_bytes(idx_bytes(np.zeros((2, 32, 32), dtype=np.uint8)))
    with pytest.raises(
        DataError,
        match=err(
            where(idx_node), "train-images-idx3-ubyte is grayscale 32 wide x 32 high but t10k-images-idx3-ubyte is "
            "grayscale 28 wide x 28 high",
        ),
    ):  # fmt: skip
        load_node_folder(idx_node, node=3)
    assert load_node_folder(idx_node, node=3, image_size=30).train_images.shape == (2, 30, 30)


def test_bad_gzip_is_named(idx_node):
    path = idx_node / IDX_FILES["train_images"]
    path.rename(path.with_name(path.name + ".gz"))  # plain bytes under a .gz name
    with pytest.raises(DataError, match=err(where(idx_node), "train-images-idx3-ubyte.gz cannot be read")):
        load_node_folder(idx_node, node=3)


def test_both_layouts_in_one_folder(idx_node):
    (idx_node / "train").mkdir()
    with pytest.raises(DataError, match=err(where(idx_node), "holds both train/ and train-images-idx3-ubyte")):
        load_node_folder(idx_node, node=3)


def test_test_labels_the_model_cannot_have(tmp_path):
    train_x, train_y, test_x, _ = synthetic(num_classes=3)
    write_node_folder(tmp_path / "node-3", train_x, train_y, layout="idx", classes=["a", "b", "c"])
    path = tmp_path / "node-3"
    (path / IDX_FILES["test_images"]).write_bytes(idx_bytes(test_x))
    (path / IDX_FILES["test_labels"]).write_bytes(idx_bytes(np.full(len(test_x), 7, dtype=np.uint8)))
    with pytest.raises(
        DataError, match=err(where(path), "t10k-labels-idx1-ubyte holds label 7 but there are 3 classes")
    ):
        load_node_folder(path, node=3)


def test_test_folder_named_for_an_unknown_class(png_node):
    (png_node / "test" / "12").mkdir()
    with pytest.raises(DataError, match=err(where(png_node), "test/12/ is not a known class")):
        load_node_folder(png_node, node=3)


def test_no_test_data_and_bad_test_dir(tmp_path):
    train_x, train_y, _, _ = synthetic()
    write_node_folder(tmp_path / "node-3", train_x, train_y, layout="png")
    path = tmp_path / "node-3"
    with pytest.raises(DataError, match=err(where(path), "holds no test data", "give a test-dir")):
        load_node_folder(path, node=3)
    missing = str(tmp_path / "shared")
    with pytest.raises(DataError, match=err(f"node 3: test-dir {missing!r} does not exist or is not a folder")):
        load_node_folder(path, node=3, test_dir=missing)
    write_node_folder(tmp_path / "shared", *synthetic(num_classes=2), layout="idx", classes=["x", "y"])
    with pytest.raises(
        DataError, match=err(f"node 3: test-dir {missing!r}: classes.txt lists x, y", "must be the same")
    ):
        load_node_folder(path, node=3, test_dir=missing)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "classes.txt lists no classes"),
        ("a\n\nb\n", "classes.txt line 2 is blank"),
        ("a\nb\na\n", "classes.txt line 3 repeats the class 'a'"),
        ("a/b\n", "classes.txt line 1: 'a/b' cannot be a folder name"),
    ],
)
def test_bad_classes_txt(png_node, text, message):
    (png_node / "classes.txt").write_text(text)
    with pytest.raises(DataError, match=err(where(png_node), message)):
        load_node_folder(png_node, node=3)


def test_bad_source_ids(idx_node):
    (idx_node / "source-ids.txt").write_text("1\n2\n")
    with pytest.raises(DataError, match=err(where(idx_node), "source-ids.txt lists 2 ids for 23 training samples")):
        load_node_folder(idx_node, node=3)
    (idx_node / "source-ids.txt").write_text("one\n")
    with pytest.raises(DataError, match=err(where(idx_node), "source-ids.txt is not one integer a line")):
        load_node_folder(idx_node, node=3)


def test_write_refuses_bad_arrays(tmp_path):
    train_x, train_y, _, _ = synthetic()
    with pytest.raises(
        DataError, match=err("train images are float64 (23, 28, 28); allowed: uint8 (n, H, W) or (n, H, W, 3)")
    ):
        write_node_folder(tmp_path / "a", train_x.astype(float), train_y, layout="idx")
    with pytest.raises(
        DataError, match=err("test images are RGB 28 wide x 28 high but the training images are grayscale")
    ):
        write_node_folder(tmp_path / "a", train_x, train_y, np.stack([train_x] * 3, -1), train_y, layout="idx")
    with pytest.raises(DataError, match=err("train labels span 0..9; allowed: 0..1")):
        write_node_folder(tmp_path / "a", train_x, train_y, layout="idx", classes=["a", "b"])
    with pytest.raises(DataError, match=err("layout 'gif' is not known; allowed: idx, png")):
        write_node_folder(tmp_path / "a", train_x, train_y, layout="gif")
    with pytest.raises(DataError, match=err("2 source ids for 23 training samples")):
        write_node_folder(tmp_path / "a", train_x, train_y, layout="idx", source_ids=[1, 2])
    assert not (tmp_path / "a").exists()


# ------------------------------------------------------------- data-dir template
def test_data_dir_for_fills_in_the_partition_id():
    assert data_dir_for("/data/node-{partition-id}", 3, 5) == "/data/node-3"
    assert data_dir_for("/data/x", 0, 1) == "/data/x"


@pytest.mark.parametrize(
    ("template", "pid", "message"),
    [
        (
            "/data/x",
            0,
            "data-dir: '/data/x' has no {partition-id}; with num-nodes = 5 every node would read the same folder",
        ),
        ("/data/node-{partition_id}", 0, "has no {partition-id}"),
        ("/data/{partition-id}/{user}", 0, "has an unknown placeholder {user}; allowed: {partition-id}"),
        ("", 0, "data-dir: '' is empty"),
        ("/data/node-{partition-id}", 5, "data-dir: partition-id 5 is out of range; allowed: 0..4"),
    ],
)
def test_data_dir_for_errors(template, pid, message):
    with pytest.raises(DataError, match=err(message)):
        data_dir_for(template, pid, 5)


def test_resolve_data_dir_prefers_the_nodes_own():
    assert resolve_data_dir("/mine", "/data/node-{partition-id}", 2, 5) == "/mine"
    assert resolve_data_dir("", "/data/node-{partition-id}", 2, 5) == "/data/node-2"
    with pytest.raises(DataError, match=err("has no {partition-id}")):
        resolve_data_dir("", "/data/x", 2, 5)
