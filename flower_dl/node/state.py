"""A node's state as a handler sees it: its config, its place, its data, its training set.

Two kinds of state, kept apart on purpose:

* What must outlive a message lives in the node's Flower context state
  (:mod:`flower_dl.node.stored`): the samples it received, the summaries of
  what it sent, its exchange key pair, keyed by the run config's cell.
* What is derived from it (the decoded dataset or the node's own folder
  (``dataset = "folder"``, :mod:`flower_dl.data.folders`), the node's partition, its
  training set and tensors, the test tensors) is kept in one per-process
  cache, :data:`CACHE` (:mod:`flower_dl.node.process`), keyed by everything it depends on.

A node reads its run config from each message and its node config
(:class:`flower_dl.config.NodeConfig`: ``partition-id``, ``data-dir``,
``identity-key``, ...) from its context, each checked once per process
(:mod:`flower_dl.node.lookup`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from flwr.app import ArrayRecord, Context, Message

from flower_dl.config import NodeConfig, RunConfig
from flower_dl.data.datasets import ImageData, input_shape, load_dataset, partition_indices
from flower_dl.data.folders import FolderData, exchange_ids, load_node_folder, resolve_data_dir
from flower_dl.exchange import identity
from flower_dl.exchange import plan as exchange
from flower_dl.node.lookup import node_config_of, partition_id_of, run_config_of
from flower_dl.node.process import CACHE, CacheKey, ProcessCache, device, device_name, seed_of, seed_torch
from flower_dl.node.stored import _RECEIVED_DIGEST, StoredState
from flower_dl.privacy.attack_data import attack_samples, attack_supply, public_split
from flower_dl.privacy.mechanisms import check_mixup_size
from flower_dl.results.provenance import array_digest

if TYPE_CHECKING:
    import torch

__all__ = [
    "CACHE",
    "CacheKey",
    "DataSpec",
    "Node",
    "ProcessCache",
    "TrainSet",
    "device",
    "device_name",
    "node_for",
    "seed_of",
    "seed_torch",
]


@dataclass(frozen=True)
class DataSpec:
    """What the model and the tensors need to know of a node's data: its shape, class count, normalisation."""

    input_shape: tuple[int, int, int]
    """``(channels, height, width)``."""
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    """Per channel, applied by :func:`flower_dl.data.datasets.to_tensor`."""


@dataclass(frozen=True)
class TrainSet:
    """A node's training set after the exchange: own samples first, then the new received ones."""

    ids: np.ndarray
    images: np.ndarray
    labels: np.ndarray
    new_per_source: dict[int, int]


@dataclass
class Node(StoredState):
    """One node as a handler sees it: its config, its place, its data and its stored state."""

    context: Context
    cfg: RunConfig
    partition_id: int

    # ------------------------------------------------------------------ data
    @property
    def cell(self) -> str:
        return self.cfg.cell_id

    @property
    def owns_its_data(self) -> bool:
        """``dataset = "folder"``: the node reads its own folder, not a partition of a shared dataset."""
        return self.cfg.dataset == "folder"

    def data_key(self) -> tuple:
        """What the node's data depends on (a cache key)."""
        cfg = self.cfg
        if self.owns_its_data:
            return ("folder", self.folder_path(), cfg.test_dir, cfg.image_size, self.partition_id)
        return ("dataset", cfg.dataset, cfg.data_dir, cfg.image_size, cfg.image_column, cfg.label_column)

    @property
    def node_config(self) -> NodeConfig:
        """The node's own settings (``data-dir``, ``identity-key``, ``peer-keys``), checked once per process."""
        return node_config_of(self.context, self.cfg.num_nodes)

    def folder_path(self) -> str:
        """The node's own folder: its node config's ``data-dir``, else the run config's template filled in."""
        node_dir = self.node_config.data_dir
        return resolve_data_dir(node_dir, self.cfg.data_dir, self.partition_id, self.cfg.num_nodes)

    def folder(self) -> FolderData:
        """The node's own folder, read and checked once per process (``dataset = "folder"``)."""
        return CACHE.get(
            self.data_key(),
            lambda: load_node_folder(
                self.folder_path(), node=self.partition_id, test_dir=self.cfg.test_dir, image_size=self.cfg.image_size
            ),
        )

    def dataset(self) -> ImageData:
        """The whole shared dataset, of which the node's partition is a part (not for ``folder``)."""
        cfg = self.cfg
        return CACHE.get(
            self.data_key(),
            lambda: load_dataset(cfg.dataset, cfg.data_dir, image_size=cfg.image_size,
                                 image_column=cfg.image_column, label_column=cfg.label_column),
        )  # fmt: skip

    def spec(self) -> DataSpec:
        """The shape, class count and normalisation of this node's data (a folder's, or the dataset's)."""

        def build() -> DataSpec:
            data = self.folder().image_data() if self.owns_its_data else self.dataset()
            return DataSpec(input_shape(data.train_images), data.num_classes, data.mean, data.std)

        return CACHE.get(("spec", *self.data_key()), build)

    def own_ids(self) -> np.ndarray:
        """Ids of the node's original samples (sorted; unique across nodes, see :func:`folders.exchange_ids`)."""
        cfg = self.cfg
        if self.owns_its_data:
            return exchange_ids(self.folder(), self.partition_id)
        key = (
            "partition", *self.data_key(), cfg.partitioner, cfg.num_nodes,
            cfg.digits_per_node, cfg.dirichlet_alpha, cfg.seed,
        )  # fmt: skip

        def split() -> list[np.ndarray]:
            data = self.dataset()
            return partition_indices(
                data.train_labels, cfg.partitioner, cfg.num_nodes, digits_per_node=cfg.digits_per_node,
                alpha=cfg.dirichlet_alpha, seed=cfg.seed, num_classes=data.num_classes,
            )  # fmt: skip

        parts = CACHE.get(key, split)
        return parts[self.partition_id]

    def own_samples(self, positions: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(ids, images, labels)`` of the node's original samples (those at ``positions`` only)."""
        ids = self.own_ids()
        if self.owns_its_data:
            folder = self.folder()
            images, labels = folder.train_images, folder.train_labels
            if positions is None:
                return ids, images, labels
            return ids[positions], images[positions], labels[positions]
        ids = ids if positions is None else ids[positions]
        data = self.dataset()
        return ids, data.train_images[ids], data.train_labels[ids]

    def test_set(self) -> tuple[np.ndarray, np.ndarray]:
        """The node's test images and labels (its folder's, or ``test-dir``'s; else the dataset's)."""
        data = self.folder() if self.owns_its_data else self.dataset()
        return data.test_images, data.test_labels

    def check_data(self) -> None:
        """Refuse a run config this node's data cannot serve, naming the key, the node and what it holds.

        Called when the node is identified, so that the run stops before any
        training: a ``model`` that cannot be built for its data (a factory
        that raises, returns no module, or gives the wrong number of outputs),
        ``mixup-size`` above its smallest class, ``mia-samples`` above what it
        can supply, a test set too small for the reference models, a model
        DP-SGD cannot train (per-sample gradients undefined, e.g. BatchNorm).
        """
        from flower_dl.node.models import check_model  # imports torch (a node trains with it anyway)

        cfg = self.cfg
        _, _, labels = self.own_samples()
        spec = self.spec()
        CACHE.get(("model-check", cfg.model, spec.input_shape, spec.num_classes),
                  lambda: check_model(cfg.model, spec.input_shape, spec.num_classes))  # fmt: skip
        if cfg.exchange_mechanism == "mixup":
            check_mixup_size(cfg.mixup_size, self.partition_id, labels)
        if self.mia_samples:
            self.attack_samples()
            if cfg.mia_reference_models:
                self.public_split()
        if self.dp() is not None:
            from flower_dl.node.models import build_model
            from flower_dl.privacy.per_sample import check_model as check_dp_model

            CACHE.get(("dp-model-check", cfg.model, spec.input_shape, spec.num_classes),
                      lambda: check_dp_model(build_model(cfg.model, spec.input_shape, spec.num_classes)))  # fmt: skip

    @property
    def mia_samples(self) -> int:
        """``mia-samples``, capped at what this node can supply (its own samples, test samples of its classes).

        The default (200) cannot hold on a small node folder; rather than fail
        the run, the node attacks with what it has, and says so when it is
        identified (the ServerApp logs it once and stores it in ``config.json``).
        """
        cfg = self.cfg
        if cfg.mia_samples == 0:
            return 0

        def limit() -> int:
            _, _, labels = self.own_samples()
            _, test_labels = self.test_set()
            return attack_supply(labels, test_labels)

        return min(cfg.mia_samples, CACHE.get(("attack-supply", *self.data_key(), self.own_key()), limit))

    def data_digest(self) -> str:
        """A hash of the arrays this node's data come from (the shared dataset, or its own folder and test set)."""

        def digest() -> str:
            data = self.folder() if self.owns_its_data else self.dataset()
            return array_digest(data.train_images, data.train_labels, data.test_images, data.test_labels)

        return CACHE.get(("data-digest", *self.data_key()), digest)

    def attack_samples(self) -> tuple[np.ndarray, np.ndarray]:
        """Positions (in its own samples) of the attack's members, and test indices of its non-members."""
        cfg = self.cfg

        def draw() -> tuple[np.ndarray, np.ndarray]:
            ids, _, labels = self.own_samples()
            _, test_labels = self.test_set()
            members, nonmembers = attack_samples(ids, labels, test_labels, self.mia_samples, cfg.seed,
                                                 node=self.partition_id)  # fmt: skip
            return np.searchsorted(ids, members), nonmembers

        return CACHE.get(("attack", *self.data_key(), self.own_key(), self.mia_samples), draw)

    def own_key(self) -> tuple:
        """What the node's own samples depend on beyond its data (its partition)."""
        cfg = self.cfg
        return (cfg.partitioner, cfg.num_nodes, cfg.digits_per_node, cfg.dirichlet_alpha, cfg.seed, self.partition_id)

    def attack_tensors(self) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        """``(members_x, members_y, non-member test indices)`` for the membership attack, on the node's device."""
        import torch

        from flower_dl.data.datasets import to_tensor

        dev = device()

        def build() -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
            positions, nonmembers = self.attack_samples()
            _, images, labels = self.own_samples(positions)
            spec = self.spec()
            x = to_tensor(images, spec.mean, spec.std).to(dev)
            return x, torch.from_numpy(labels.astype(np.int64)).to(dev), nonmembers

        return CACHE.get(("attack-tensors", *self.data_key(), self.own_key(), self.mia_samples, str(dev)), build)

    def public_split(self) -> tuple[np.ndarray, np.ndarray]:
        """The attacker's reference and population halves of the test set (:func:`attack_data.public_split`)."""
        _, nonmembers = self.attack_samples()
        _, test_labels = self.test_set()
        return CACHE.get(
            ("public-split", *self.data_key(), self.own_key(), self.mia_samples),
            lambda: public_split(len(test_labels), nonmembers, self.cfg.seed, node=self.partition_id),
        )

    def dp(self):  # -> flower_dl.privacy.dp.DPSGD | None
        """DP-SGD's settings for local training (``dp-noise-multiplier`` > 0), else ``None``: plain SGD."""
        from flower_dl.privacy.dp import DPSGD

        cfg = self.cfg
        return DPSGD(cfg.dp_clip, cfg.dp_noise_multiplier) if cfg.dp_noise_multiplier > 0 else None

    def model(self, arrays: ArrayRecord, dev):  # -> torch.nn.Module
        """The run's model holding ``arrays``' weights, on ``dev``: one module per process and model, reused.

        Every message loads a model; reusing the module saves building one
        (and drawing its random initial weights) each time. Nothing of a
        previous message survives in it: every weight and buffer is loaded,
        and training clears the gradients before each step.
        """
        from flower_dl.node.models import build_model, load_model

        name, spec = self.cfg.model, self.spec()
        module = CACHE.get(
            ("model", name, spec.input_shape, spec.num_classes, str(dev)),
            lambda: build_model(name, spec.input_shape, spec.num_classes).to(dev),
        )
        return load_model(name, arrays, dev, into=module)

    # ------------------------------------------------------------ identity
    def identity(self):  # -> Ed25519PrivateKey | None
        """The node's long-term signing key, if its node config names an ``identity-key`` file."""
        path = self.node_config.identity_key
        return None if not path else CACHE.get(("identity", path), lambda: identity.load_identity(path))

    def peer_keys(self):  # -> dict[int, Ed25519PublicKey] | None
        """The peers' long-term public keys, if its node config names a ``peer-keys`` file."""
        path = self.node_config.peer_keys
        return None if not path else CACHE.get(("peer-keys", path), lambda: identity.load_peer_keys(path))

    # -------------------------------------------------------- training set
    def _train_key(self) -> CacheKey:
        stored = self.context.state.get(self._key(_RECEIVED_DIGEST))  # written with what was received
        digest = "" if stored is None else str(stored["digest"])
        return ("train-set", self.context.run_id, self.cell, self.partition_id, digest)

    def train_set(self) -> TrainSet:
        """Own samples merged with what was received, each id once (built once per process)."""
        key = self._train_key()
        return CACHE.get(key, lambda: self._merge(self.received()))

    def _merge(self, received: dict[str, np.ndarray] | None) -> TrainSet:
        # this node's older training sets (another cell, run or exchange) are stale now
        CACHE.drop(lambda k: not (k[0] in ("train-set", "tensors") and k[3] == self.partition_id))
        ids, images, labels = self.own_samples()
        if received is None:
            return TrainSet(ids, images, labels, {})
        sources = list(dict.fromkeys(received["src"].tolist()))  # in order of appearance
        order: np.ndarray | list[int]
        order = np.concatenate([np.flatnonzero(received["src"] == s) for s in sources]) if sources else []
        order = np.asarray(order, dtype=np.int64)
        pairs = [(int(s), received["ids"][received["src"] == s]) for s in sources]
        merged = exchange.merge(ids, pairs)
        keep = order[merged.received_positions]
        return TrainSet(
            merged.ids,
            np.concatenate([images, received["images"][keep]]),
            np.concatenate([labels, received["labels"][keep]]),
            merged.new_per_source,
        )

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(train_x, train_y, test_x, test_y)`` on the node's device (test set: once per process)."""
        import torch

        from flower_dl.data.datasets import to_tensor

        dev = device()

        spec = self.spec()

        def train() -> tuple[torch.Tensor, torch.Tensor]:
            ts = self.train_set()
            x = to_tensor(ts.images, spec.mean, spec.std).to(dev)
            return x, torch.from_numpy(ts.labels.astype(np.int64)).to(dev)

        def test() -> tuple[torch.Tensor, torch.Tensor]:
            images, labels = self.test_set()
            x = to_tensor(images, spec.mean, spec.std).to(dev)
            return x, torch.from_numpy(labels.astype(np.int64)).to(dev)

        train_x, train_y = CACHE.get(("tensors", *self._train_key()[1:], str(dev)), train)
        test_x, test_y = CACHE.get(("test-tensors", *self.data_key(), str(dev)), test)
        return train_x, train_y, test_x, test_y


# ------------------------------------------------------------------ lookup
def node_for(msg: Message, context: Context) -> Node:
    """The node a message is addressed to, with the run config the message carries."""
    cfg = run_config_of(msg, context)
    return Node(context, cfg, partition_id_of(context, cfg))
