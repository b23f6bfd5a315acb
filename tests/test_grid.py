"""PromptGrid: replies are collected as soon as they are ready, within the timeout; in a simulation, in windows."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from flower_dl.server.grid import MIN_WINDOW, NO_REPLY, PromptGrid, prompt, simulation_window, split_replies


class SlowInner:
    """A stand-in Grid whose reply to message ``k`` is ready ``delays[k]`` seconds after the push."""

    def __init__(self, delays: dict[str, float]) -> None:
        self.delays = delays
        self.pushed_at = None
        self.pulls = 0

    def push_messages(self, messages):
        self.pushed_at = time.monotonic()
        return [m.id for m in messages]

    def pull_messages(self, message_ids):
        self.pulls += 1
        now = time.monotonic() - self.pushed_at
        ready = [mid for mid in message_ids if self.delays[mid] <= now]
        return [SimpleNamespace(metadata=SimpleNamespace(reply_to_message_id=mid)) for mid in ready]

    def get_node_ids(self):
        return [11, 12]


def _messages(*ids):
    return [SimpleNamespace(id=i) for i in ids]


def test_replies_are_returned_soon_after_the_last_one_is_ready():
    inner = SlowInner({"a": 0.05, "b": 0.4})
    started = time.monotonic()
    replies = PromptGrid(inner).send_and_receive(_messages("a", "b"), timeout=10)
    took = time.monotonic() - started
    assert sorted(r.metadata.reply_to_message_id for r in replies) == ["a", "b"]
    # Flower's own loop would return after 3 s; this one within one capped interval (0.25 s)
    assert 0.4 <= took < 0.4 + 0.25 + 0.2
    assert inner.pulls < 40  # the interval grows: no busy loop


def test_timeout_returns_what_arrived():
    inner = SlowInner({"a": 0.0, "b": 60.0})
    started = time.monotonic()
    replies = PromptGrid(inner).send_and_receive(_messages("a", "b"), timeout=0.3)
    assert [r.metadata.reply_to_message_id for r in replies] == ["a"]
    assert time.monotonic() - started < 0.3 + 0.2


def test_everything_else_is_delegated():
    grid = PromptGrid(SlowInner({}))
    assert grid.get_node_ids() == [11, 12]
    assert list(grid.send_and_receive([], timeout=1)) == []


def test_bad_intervals_are_refused():
    with pytest.raises(ValueError, match="first_interval"):
        PromptGrid(SlowInner({}), first_interval=0.5, max_interval=0.1)


class EchoInner:
    """A stand-in Grid that replies to every pushed message at the next pull, except to those in ``hang``."""

    def __init__(self, hang=()) -> None:
        self.hang = set(hang)
        self.pushed: list[str] = []
        self.outstanding: set[str] = set()
        self.max_outstanding = 0

    def push_messages(self, messages):
        ids = [m.id for m in messages]
        self.pushed += ids
        self.outstanding.update(ids)
        self.max_outstanding = max(self.max_outstanding, len(self.outstanding))
        return ids

    def pull_messages(self, message_ids):
        ready = [mid for mid in message_ids if mid in self.outstanding and mid not in self.hang]
        self.outstanding.difference_update(ready)
        return [SimpleNamespace(metadata=SimpleNamespace(reply_to_message_id=mid)) for mid in ready]

    def get_node_ids(self):
        return list(range(1000))


def test_a_window_keeps_at_most_that_many_messages_pushed_and_builds_them_as_it_sends():
    inner = EchoInner()
    built_while_outstanding = []

    def lazily():  # as DecentralizedStrategy builds its messages
        for i in range(10):
            built_while_outstanding.append(len(inner.outstanding))
            yield SimpleNamespace(id=f"m{i}")

    replies = PromptGrid(inner, window=3).send_and_receive(lazily(), timeout=10)
    assert sorted(r.metadata.reply_to_message_id for r in replies) == sorted(f"m{i}" for i in range(10))
    assert inner.pushed == [f"m{i}" for i in range(10)]  # in the order given
    assert inner.max_outstanding == 3
    assert max(built_while_outstanding) < 3  # a message is built only when there is room for it


def test_a_window_full_of_hanging_messages_leaves_the_rest_unsent_and_missing():
    inner = EchoInner(hang={"a", "b"})
    messages = [SimpleNamespace(id=i, metadata=SimpleNamespace(dst_node_id=n)) for n, i in enumerate("abcd")]
    replies = PromptGrid(inner, window=2).send_and_receive(messages, timeout=0.3)
    assert replies == [] and inner.pushed == ["a", "b"]
    # whoever collects them records the unsent ones as missing, as timed-out ones
    assert split_replies(replies, {0: "a", 1: "b", 2: "c", 3: "d"}).failed == dict.fromkeys("abcd", NO_REPLY)


def test_the_simulation_window_shrinks_with_the_number_of_nodes_down_to_a_floor():
    assert simulation_window(1000) == 25  # 25,000 checks a pass of the delivery loop
    assert simulation_window(100) == 250  # larger than the wave: all at once
    assert simulation_window(10**6) == MIN_WINDOW
    inner = EchoInner()  # 1000 connected nodes: a window of 25
    PromptGrid(inner, window=simulation_window).send_and_receive(_messages(*map(str, range(100))), timeout=10)
    assert inner.max_outstanding == 25


def test_only_a_simulation_grid_gets_a_window():
    from flwr.superlink.grid.inmemory_grid import InMemoryGrid

    assert prompt(InMemoryGrid.__new__(InMemoryGrid)).window is simulation_window
    assert prompt(SlowInner({})).window is None


def test_a_bad_window_is_refused():
    with pytest.raises(ValueError, match="window must be at least 1"):
        PromptGrid(SlowInner({}), window=0)
