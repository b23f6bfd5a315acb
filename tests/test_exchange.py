"""The exchange protocol, without Flower."""

from __future__ import annotations

import numpy as np
import pytest

from flower_dl.exchange.plan import BROADCAST, draw_shares, merge, payload_for, share_size


@pytest.mark.parametrize(("n", "ratio", "size"), [(1200, 0.1, 120), (1200, 0.0, 0), (1200, 1.0, 1200), (7, 0.5, 3)])
def test_share_size(n, ratio, size) -> None:
    assert share_size(n, ratio) == size


def test_broadcast_sends_one_sample_to_all_and_per_neighbour_independent_ones() -> None:
    own = np.arange(100, 200)
    b = draw_shares(own, 0.3, [1, 2, 3], "broadcast", np.random.default_rng(0))
    assert list(b) == [BROADCAST] and len(b[BROADCAST]) == 30
    assert payload_for(b, 1) is payload_for(b, 3)
    p = draw_shares(own, 0.3, [1, 2, 3], "per-neighbour", np.random.default_rng(0))
    assert sorted(p) == [1, 2, 3]
    assert not np.array_equal(p[1], p[2])
    for pos in p.values():
        assert len(pos) == 30 and len(set(pos.tolist())) == 30
    full = draw_shares(own, 1.0, [1], "broadcast", np.random.default_rng(0))
    assert np.array_equal(own[full[BROADCAST]], own)


def test_merge_dedupes_against_own_data_and_across_sources() -> None:
    own = np.array([1, 2, 3])
    merged = merge(own, [(5, np.array([3, 4, 5])), (6, np.array([5, 6, 1]))])
    assert merged.ids.tolist() == [1, 2, 3, 4, 5, 6]
    assert merged.received_positions.tolist() == [1, 2, 4]  # 4, 5 from node 5; 6 from node 6
    assert merged.new_per_source == {5: 2, 6: 1}
    empty = merge(own, [])
    assert empty.ids.tolist() == [1, 2, 3] and empty.new_per_source == {}
