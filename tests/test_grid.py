"""PromptGrid: replies are collected as soon as they are ready, within the timeout."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from flower_dl.grid import PromptGrid


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
