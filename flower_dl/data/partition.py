"""Partitioners: which of the training set's samples each node holds.

Partitioners (names from :data:`flower_dl.registry.PARTITIONERS`; ``C`` classes)
    ``digits-per-node``          the study's label skew: node ``i`` of ``N`` holds the
                                 classes ``{(i*N + d) mod C : d = i..i+k-1}`` and *all*
                                 training samples of each, so nodes sharing a class hold
                                 the very same samples (overlap for ``N*k > C``).
    ``digits-per-node-disjoint`` same classes, a shared class's samples split among the
                                 nodes holding it (flwr-datasets' PathologicalPartitioner).
    ``iid``                      flwr-datasets' IidPartitioner.
    ``dirichlet``                flwr-datasets' DirichletPartitioner over labels, ``alpha``.
"""

from __future__ import annotations

import warnings

import numpy as np

from flower_dl import registry
from flower_dl.data.images import NUM_CLASSES, DataError

PARTITIONERS: tuple[str, ...] = registry.PARTITIONERS.names()
LABEL_SKEW = ("digits-per-node", "digits-per-node-disjoint")


def study_classes(node: int, num_nodes: int, k: int, num_classes: int = NUM_CLASSES) -> list[int]:
    """Classes of ``node`` in the study's label skew: ``{(node*N + d) mod C : d = node..node+k-1}``."""
    return sorted({(node * num_nodes + d) % num_classes for d in range(node, node + k)})


def _labels_dataset(labels: np.ndarray):  # -> datasets.Dataset
    from datasets import Dataset

    return Dataset.from_dict({"label": labels.tolist(), "idx": list(range(len(labels)))})


def _study_pathological_partitioner(num_nodes: int, k: int, seed: int, num_classes: int):
    from flwr_datasets.partitioner import PathologicalPartitioner

    class StudyPathologicalPartitioner(PathologicalPartitioner):
        """PathologicalPartitioner with the study's class assignment."""

        def _determine_partition_id_to_unique_labels(self) -> None:
            self._unique_labels = sorted(self.dataset.unique(self._partition_by))
            present = set(self._unique_labels)  # a class without samples gives a node nothing
            for pid in range(self._num_partitions):
                classes = study_classes(pid, num_nodes, k, num_classes)
                self._partition_id_to_unique_labels[pid] = [c for c in classes if c in present]

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
    num_classes: int = NUM_CLASSES,
) -> list[np.ndarray]:
    """Split the training set among ``num_nodes`` nodes.

    Parameters
    ----------
    labels : numpy.ndarray
        Training labels in ``0..num_classes-1``; sample ids are their positions.
    partitioner : str
        One of :data:`PARTITIONERS`.
    num_nodes : int
        Number of nodes.
    digits_per_node : int
        ``k`` of the label-skew partitioners (``1..num_classes``; not used by the others).
    alpha : float
        Dirichlet concentration.
    seed : int
        Seed of the random partitioners.
    num_classes : int
        The dataset's class count (:attr:`ImageData.num_classes`), which the
        study's class assignment cycles through.

    Returns
    -------
    list[numpy.ndarray]
        Sorted sample ids (``int64``) of each node.

    Raises
    ------
    DataError
        Unknown partitioner, ``digits-per-node`` outside ``1..num_classes``,
        labels outside the classes, or a split the partitioner cannot make.
    """
    labels = np.asarray(labels)
    if partitioner not in PARTITIONERS:
        raise DataError(f"partitioner: {partitioner!r} is not a known partitioner; allowed: {', '.join(PARTITIONERS)}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(
            f"partitioner: labels span {int(labels.min())}..{int(labels.max())} but there are {num_classes} "
            f"classes; allowed: 0..{num_classes - 1}"
        )
    if partitioner in LABEL_SKEW and not 1 <= digits_per_node <= num_classes:
        raise DataError(
            f"digits-per-node: {digits_per_node} is out of range; allowed: 1..{num_classes} "
            f"(the dataset's {num_classes} classes)"
        )
    if partitioner == "digits-per-node":
        out = []
        for node in range(num_nodes):
            classes = study_classes(node, num_nodes, digits_per_node, num_classes)
            out.append(np.flatnonzero(np.isin(labels, classes)).astype(np.int64))
        return out
    if partitioner == "digits-per-node-disjoint":
        part = _study_pathological_partitioner(num_nodes, digits_per_node, seed, num_classes)
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
        with warnings.catch_warnings():  # classes no node holds (N*k < C) are the study's design, not a mistake
            warnings.filterwarnings("ignore", message=r"Classes: .* will NOT be used", category=UserWarning)
            parts = [part.load_partition(i)["idx"] for i in range(num_nodes)]
    except ValueError as err:
        raise DataError(
            f"partitioner: {partitioner!r} cannot split {len(labels)} samples among {num_nodes} nodes: {err}"
        ) from err
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]
