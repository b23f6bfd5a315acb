"""Sending messages and collecting replies: one way for discovery, the exchange and every strategy.

:func:`collect` sends one wave of messages (keyed, e.g. by partition-id) and
returns the replies by key and the failures with their reasons, a missing
reply counting as a timeout; :func:`split_replies` is its second half, for the
strategies, whose replies Flower's own round loop collects.

:class:`PromptGrid` is a Grid that collects replies as soon as they arrive.

On a deployment, a ServerApp gets Flower 1.42's ``HttpGrid``, whose
``send_and_receive`` pushes the messages, then pulls the replies every 3 s:
every wave of messages (node discovery, each exchange step, each round's
training and its evaluation) ends on the next multiple of 3 s after its last
reply. (A simulation's ``InMemoryGrid`` already pulls every 0.1 s.) :class:`PromptGrid` wraps any Grid and
polls with a short, growing interval instead (``first_interval``, times 1.5
after every empty pull, capped at ``max_interval``; back to the first interval
whenever replies arrive). A pull is one local RPC that returns only the
replies that are ready, so polling costs little; everything else is delegated
unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from flwr.app import Message
from flwr.serverapp import Grid

K = TypeVar("K")


class PromptGrid(Grid):
    """Wrap ``grid``; ``send_and_receive`` polls every 10..250 ms instead of every 3 s."""

    def __init__(self, grid: Grid, first_interval: float = 0.01, max_interval: float = 0.25) -> None:
        if not 0 < first_interval <= max_interval:
            raise ValueError(f"need 0 < first_interval <= max_interval; got {first_interval}, {max_interval}")
        self.inner = grid
        self.first_interval = first_interval
        self.max_interval = max_interval

    # ----------------------------------------------------------- delegated
    def set_run(self, run_id: int) -> None:  # type: ignore[override]
        self.inner.set_run(run_id)

    @property
    def run(self):  # type: ignore[override]
        return self.inner.run

    def create_message(self, *args, **kwargs) -> Message:  # type: ignore[override]
        return self.inner.create_message(*args, **kwargs)

    def get_node_ids(self) -> Iterable[int]:
        return self.inner.get_node_ids()

    def get_nodes(self):  # type: ignore[override]
        return self.inner.get_nodes()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self.inner.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self.inner.pull_messages(message_ids)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    # ------------------------------------------------------------ prompt
    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        """Push ``messages``; return the replies that arrived within ``timeout`` seconds (None: all)."""
        pending = {mid for mid in self.inner.push_messages(messages) if mid}
        deadline = None if timeout is None else time.monotonic() + timeout
        replies: list[Message] = []
        interval = self.first_interval
        while pending:
            got = list(self.inner.pull_messages(pending))
            if got:
                replies.extend(got)
                pending.difference_update(m.metadata.reply_to_message_id for m in got)
                interval = self.first_interval
                if not pending:
                    break
            else:
                interval = min(interval * 1.5, self.max_interval)
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                time.sleep(min(interval, left))
            else:
                time.sleep(interval)
        return replies


# ------------------------------------------------------------- collecting
NO_REPLY = "no reply within the round timeout"
"""The reason recorded for a node whose reply did not arrive."""


@dataclass(frozen=True)
class Collected(Generic[K]):
    """Replies to one wave of messages, split by the key each message was sent under."""

    ok: dict[K, Message]
    """Key -> reply without an error."""
    failed: dict[K, str]
    """Key -> why there is no usable reply: the error's last line, or :data:`NO_REPLY`."""


def short_reason(reason: str) -> str:
    """The last non-empty line of an error reason (Flower sends whole tracebacks)."""
    lines = [line.strip() for line in str(reason).splitlines() if line.strip()]
    return lines[-1] if lines else "unknown error"


def split_replies(replies: Iterable[Message], key_of_node: Mapping[int, K]) -> Collected[K]:
    """Split ``replies`` into usable ones and failures, by the key of the node each came from.

    ``key_of_node`` maps the Flower node id of every node a message went to
    onto its key (e.g. its partition-id); a node with no reply among
    ``replies`` is a failure (:data:`NO_REPLY`), as is an error reply. Replies
    from nodes not in ``key_of_node`` are ignored.
    """
    ok: dict[K, Message] = {}
    failed: dict[K, str] = {}
    for reply in replies:
        key = key_of_node.get(reply.metadata.src_node_id)
        if key is None:
            continue
        if reply.has_error():
            failed[key] = short_reason(reply.error.reason)
        else:
            ok[key] = reply
    for key in key_of_node.values():
        if key not in ok and key not in failed:
            failed[key] = NO_REPLY
    return Collected(ok, failed)


def collect(grid: Grid, messages: Mapping[K, Message], timeout: float | None) -> Collected[K]:
    """Send ``messages`` (by key), wait up to ``timeout`` seconds, and split the replies by key."""
    key_of_node = {msg.metadata.dst_node_id: key for key, msg in messages.items()}
    return split_replies(grid.send_and_receive(list(messages.values()), timeout=timeout), key_of_node)
