"""What a node keeps in its Flower context state: what it received and sent, its exchange keys, its reference models.

A SuperNode runs every message in a fresh process, so nothing else survives
from the exchange phase to training. Each record is keyed by the *cell* (a hash
of the run config, :meth:`flower_dl.config.RunConfig.cell_id`), so that runs of
different configs never see each other's state; a node drops other cells'
records when it is identified for a new one. :class:`StoredState` is the part
of :class:`flower_dl.node.state.Node` that reads and writes them.
"""

from __future__ import annotations

import hashlib
from typing import cast

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context

from flower_dl.exchange import crypto

_RECEIVED = "received"
_RECEIVED_DIGEST = "received-digest"
_SENT = "sent"
_KEYS = "exchange-keys"
_REFERENCE = "reference-model"


class StoredState:
    """A node's records in its context state, keyed by its cell (a mixin of :class:`~flower_dl.node.state.Node`)."""

    context: Context

    @property
    def cell(self) -> str:
        """The run config's cell id, the records' key."""
        raise NotImplementedError

    def _key(self, name: str) -> str:
        return f"{name}:{self.cell}"

    def start_cell(self) -> None:
        """Forget the stored state of every other cell (the node now serves this one)."""
        for key in list(self.context.state.keys()):
            name, _, cell = key.partition(":")
            ours = name in (_RECEIVED, _RECEIVED_DIGEST, _SENT, _KEYS) or name.startswith(_REFERENCE)
            if ours and cell != self.cell:
                del self.context.state[key]

    def key_pair(self) -> crypto.KeyPair:
        """The node's X25519 key pair for this cell's exchange, made once and kept in its state."""
        stored = self.context.state.get(self._key(_KEYS))
        if stored is None:
            keys = crypto.KeyPair.generate()
            self.context.state[self._key(_KEYS)] = ConfigRecord({"private": keys.private_bytes})
            return keys
        return crypto.KeyPair.from_private_bytes(cast(bytes, stored["private"]))

    def store_received(self, arrays: dict[str, np.ndarray]) -> None:
        """Keep the decrypted ``ids``/``src``/``images``/``labels`` of what the neighbours sent."""
        self.context.state[self._key(_RECEIVED)] = ArrayRecord({k: Array(v) for k, v in arrays.items()})
        # the training set's cache key, kept so that a train message need not decode what was received
        self.context.state[self._key(_RECEIVED_DIGEST)] = ConfigRecord(
            {"digest": _digest(arrays["ids"], arrays["src"])}
        )

    def received(self) -> dict[str, np.ndarray] | None:
        record = cast("ArrayRecord | None", self.context.state.get(self._key(_RECEIVED)))
        return None if record is None else {k: record[k].numpy() for k in record}

    def received_ids(self) -> dict[int, np.ndarray]:
        """Source -> ids of everything received from it (before deduplication)."""
        received = self.received()
        if received is None:
            return {}
        return {int(src): received["ids"][received["src"] == src] for src in np.unique(received["src"])}

    def store_sent(
        self,
        ids: dict[int, np.ndarray],
        intensity: dict[int, np.ndarray],
        labels: dict[int, np.ndarray],
        nn_distance: dict[int, float],
    ) -> None:
        """Keep, per share key, the ids of what was sent, its distributions and its distance to real images."""
        record = ArrayRecord()
        for key in ids:
            record[f"ids:{key}"] = Array(np.asarray(ids[key], dtype=np.int64))
            record[f"intensity:{key}"] = Array(intensity[key])
            record[f"labels:{key}"] = Array(labels[key])
            record[f"nn-distance:{key}"] = Array(np.array([nn_distance[key]], dtype=np.float64))
        self.context.state[self._key(_SENT)] = record

    def sent(self, what: str) -> dict[int, np.ndarray]:
        """Share key -> the ``ids``, ``intensity`` or ``labels`` of what was sent (empty: nothing drawn)."""
        record = cast("ArrayRecord | None", self.context.state.get(self._key(_SENT)))
        if record is None:
            return {}
        prefix = f"{what}:"
        return {int(k.split(":", 1)[1]): record[k].numpy() for k in record if k.startswith(prefix)}

    def stored_reference(self, k: int) -> tuple[int, ArrayRecord] | None:
        """Reference model ``k`` as an earlier message left it: its chunks of training done, and its weights."""
        done = self.context.state.get(self._key(f"{_REFERENCE}-{k}-done"))
        if done is None:
            return None
        return int(cast(int, done["done"])), cast(ArrayRecord, self.context.state[self._key(f"{_REFERENCE}-{k}")])

    def store_reference(self, k: int, done: int, model) -> None:  # model: torch.nn.Module
        """Keep reference model ``k``'s weights after ``done`` chunks, for the node's next message in any process.

        In a simulation a node's messages land in whichever worker is free,
        and a SuperNode runs each in a fresh process: without this, the final
        evaluation would train again the models its last ``train`` message
        trained.
        """
        self.context.state[self._key(f"{_REFERENCE}-{k}")] = ArrayRecord(model.state_dict())
        self.context.state[self._key(f"{_REFERENCE}-{k}-done")] = ConfigRecord({"done": done})


def _digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha1()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()
