"""What a node process keeps for every node it serves: one cache of built objects, its device, seeds.

A simulation worker serves many nodes and many rounds, a SuperNode runs each
message in a fresh process: :data:`CACHE` keeps what is derived from a node's
data and config (datasets, partitions, tensors, models), keyed by everything it
depends on, so that a worker builds each node's tensors once.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

CacheKey = tuple[Hashable, ...]
"""A cache key: a tuple whose first item names the kind of object (``("train-set", ...)``)."""


class ProcessCache:
    """A small least-recently-used cache of built objects, keyed by what they depend on."""

    def __init__(self, max_entries: int = 4096) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[CacheKey, Any] = OrderedDict()

    def get(self, key: CacheKey, build: Callable[[], Any]) -> Any:
        """The object for ``key``, built by ``build()`` on first use."""
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        value = self._entries[key] = build()
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return value

    def drop(self, keep: Callable[[CacheKey], bool]) -> None:
        """Forget every entry whose key ``keep`` rejects."""
        for key in [k for k in self._entries if not keep(k)]:
            del self._entries[key]

    def clear(self) -> None:
        self._entries.clear()


CACHE = ProcessCache()
"""The process's one cache (datasets, partitions, nodes' training sets and tensors)."""


def device():  # -> torch.device
    """The GPU when this process was given one (e.g. ``client-resources-num-gpus``), else the CPU."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_name(dev) -> str:  # dev: torch.device
    """``"cpu"``, or ``"cuda:0 (NVIDIA H100 80GB HBM3)"``: the device a node trained on, for provenance."""
    if dev.type != "cuda":
        return str(dev.type)

    def name() -> str:
        import torch

        index = dev.index if dev.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"

    return CACHE.get(("device-name", str(dev)), name)


def seed_torch(seed: int, dev) -> None:  # dev: torch.device
    """Seed torch's global generator (dropout masks) before local training.

    On the CPU only its generator: ``torch.manual_seed`` also queues seeding
    every GPU backend, formatting a stack trace for each, in every message.
    """
    import torch

    if dev.type == "cuda":
        torch.manual_seed(seed)
    else:
        torch.default_generator.manual_seed(seed)


def seed_of(*parts: int) -> int:
    """A 32-bit seed derived from integers (the run's seed, a partition-id, a round, ...)."""
    digest = hashlib.sha256(",".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little")
