"""Sending messages and collecting replies: one way for discovery, the exchange and every strategy.

:func:`collect` sends one wave of messages (keyed, e.g. by partition-id) and
returns the replies by key and the failures with their reasons, a missing
reply counting as a timeout; :func:`split_replies` is its second half, for the
strategies, whose replies Flower's own round loop collects.

:class:`PromptGrid` is a Grid that collects replies as soon as they arrive
and, in a simulation, keeps only a window of messages in Flower's link state
(:func:`prompt`).

On a deployment, a ServerApp gets Flower 1.42's ``HttpGrid``, whose
``send_and_receive`` pushes the messages, then pulls the replies every 3 s:
every wave of messages (node discovery, each exchange step, each round's
training and its evaluation) ends on the next multiple of 3 s after its last
reply. :class:`PromptGrid` wraps any Grid and polls with a short, growing
interval instead (``first_interval``, times 1.5 after every empty pull,
capped at ``max_interval``; back to the first interval whenever replies
arrive). A pull is one local RPC that returns only the replies that are
ready, so polling costs little; everything else is delegated unchanged.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from flwr.app import Message
from flwr.serverapp import Grid

if TYPE_CHECKING:
    from flwr.proto.node_pb2 import NodeInfo
    from flwr.supercore.run import Run

K = TypeVar("K")


CHECKS_PER_PASS = 25_000
"""Stored messages one pass of a simulation's delivery loop may check (:func:`simulation_window`)."""
MIN_WINDOW = 16
"""The smallest window: enough messages in flight to keep the simulation's workers busy."""


def simulation_window(num_nodes: int) -> int:
    """Messages a simulation of ``num_nodes`` nodes keeps in Flower's link state at a time.

    Each pass of the simulation's delivery loop asks the link state for every
    node's next message, and each ask checks every stored message: about
    ``num_nodes x window`` checks a pass, and a wave of N messages needs N /
    window passes. :data:`CHECKS_PER_PASS` was chosen by measurement at 1,000
    nodes (``benchmarks/bench_scale.py``, 25 messages): a window of 8 made
    the waves of the exchange phase slower (more passes, each after the
    loop's 0.1 s pause), one of 128 was no faster than none. Below 250 nodes
    the window is larger than the wave.
    """
    return max(MIN_WINDOW, CHECKS_PER_PASS // max(num_nodes, 1))


def prompt(grid: Grid) -> Grid:
    """``grid`` wrapped in a :class:`PromptGrid`; in a simulation, one that sends in windows.

    A simulation's ``InMemoryGrid`` hands messages to the nodes by a loop that,
    every 0.1 s, asks the link state for each node's next message, and each
    such ask checks *every* message stored there: a wave of N messages pushed
    at once costs that loop on the order of N x N checks per pass, in the
    Python process that also runs the ServerApp and feeds the nodes' workers
    (at 1,000 nodes, about half of that process's sampled time). Keeping at most
    :func:`simulation_window` messages stored, the next pushed as replies
    arrive, bounds a pass; ``benchmarks/bench_scale.py`` measures the round
    against Flower's floor. A deployment's Grid is wrapped without a window
    (its SuperNodes each ask for their own messages).
    """
    from flwr.superlink.grid.inmemory_grid import InMemoryGrid

    return PromptGrid(grid, window=simulation_window if isinstance(grid, InMemoryGrid) else None)


class PromptGrid(Grid):
    """Wrap ``grid``; ``send_and_receive`` polls every 10..250 ms instead of every 3 s.

    Parameters
    ----------
    grid : flwr.serverapp.Grid
        The Grid to wrap.
    first_interval, max_interval : float
        The polling interval after replies arrived, and its cap after empty pulls.
    window : int or callable, optional
        At most this many messages awaiting their reply at a time, the next
        pushed as replies arrive; a callable gets the number of connected
        nodes and returns the window (None: all at once; see :func:`prompt`).
    """

    def __init__(
        self,
        grid: Grid,
        first_interval: float = 0.01,
        max_interval: float = 0.25,
        window: int | Callable[[int], int] | None = None,
    ) -> None:
        if not 0 < first_interval <= max_interval:
            raise ValueError(f"need 0 < first_interval <= max_interval; got {first_interval}, {max_interval}")
        if isinstance(window, int) and window < 1:
            raise ValueError(f"window must be at least 1 (or None); got {window}")
        self.inner = grid
        self.first_interval = first_interval
        self.max_interval = max_interval
        self.window = window

    # ----------------------------------------------------------- delegated
    def set_run(self, run: Run) -> None:
        self.inner.set_run(run)

    @property
    def run(self) -> Run:
        return self.inner.run

    def create_message(self, *args, **kwargs) -> Message:
        return self.inner.create_message(*args, **kwargs)

    def get_node_ids(self) -> Iterable[int]:
        return self.inner.get_node_ids()

    def get_nodes(self) -> Iterable[NodeInfo]:
        return self.inner.get_nodes()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self.inner.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self.inner.pull_messages(message_ids)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    # ------------------------------------------------------------ prompt
    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        """Push ``messages``; return the replies that arrived within ``timeout`` seconds (None: all).

        With a ``window``, messages not yet pushed when the time is up are
        never sent: their nodes are missing replies, as timed-out ones are.
        """
        unsent = iter(messages)
        pending: set[str] = set()
        window = self.window(len(list(self.inner.get_node_ids()))) if callable(self.window) else self.window

        def top_up() -> None:
            room = None if window is None else window - len(pending)
            batch = list(itertools.islice(unsent, room))
            if batch:
                pending.update(mid for mid in self.inner.push_messages(batch) if mid)

        top_up()
        deadline = None if timeout is None else time.monotonic() + timeout
        replies: list[Message] = []
        interval = self.first_interval
        while pending:
            got = list(self.inner.pull_messages(pending))
            if got:
                replies.extend(got)
                pending.difference_update(m.metadata.reply_to_message_id for m in got)
                top_up()
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


_FLOWER_WRAPPER = "Exception ClientAppException occurred. Message: "
"""How Flower's simulation wraps a node's exception message."""


def short_reason(reason: str | None) -> str:
    """The last non-empty line of an error reason (Flower sends whole tracebacks), without Flower's wrapper."""
    lines = [line.strip() for line in str(reason).splitlines() if line.strip()]
    text = lines[-1] if lines else "unknown error"
    if _FLOWER_WRAPPER in text:
        text = text.split(_FLOWER_WRAPPER, 1)[1].removesuffix("'>")
    return text


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
