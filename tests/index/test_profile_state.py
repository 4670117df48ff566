"""The compact per-item table of a profile behaves like the dict of ``ItemStat`` it replaced."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from aisle.index.profile import EVENT_TYPES
from aisle.index.profile.state import ItemStat, ItemTable

entries = st.lists(
    st.tuples(
        st.integers(0, 2**40),
        st.sampled_from(EVENT_TYPES),
        st.floats(-60, 60, allow_nan=False),
        st.floats(0, 2e9, allow_nan=False),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(entries=entries, repeat=st.integers(1, 3))
def test_item_table_merges_like_a_dict_of_item_stats(entries, repeat) -> None:
    table = ItemTable()
    expected: dict[tuple[int, str], ItemStat] = {}
    for row, event_type, log2_weight, timestamp in entries * repeat:
        stat = ItemStat(log2_weight, timestamp)
        table.add((row, event_type), stat)
        known = expected.get((row, event_type))
        expected[(row, event_type)] = stat if known is None else known.merged(stat)
    assert len(table) == len(expected)
    assert [key for key, _ in table.items()] == list(expected)  # insertion order, like a dict
    for key, stat in table.items():
        assert stat == expected[key] and table.get(key) == stat
    assert table.get((2**40 + 1, "view")) is None
    assert table.nbytes() <= 28 * (len(expected) * 3 // 2 + 4)
