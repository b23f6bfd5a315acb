"""A Grid that collects replies as soon as they arrive.

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
from collections.abc import Iterable

from flwr.app import Message
from flwr.serverapp import Grid


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
