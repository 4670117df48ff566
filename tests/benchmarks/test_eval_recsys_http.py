"""The MovieLens replay of ``benchmarks.eval_recsys_http`` is leak-free: checked on the real data.

For every probe, the events the replay posts before it (release time before the probe's
moment) are all earlier than the probe, and none is the probe's target by the probe's user.
"""

from __future__ import annotations

import bisect
import itertools

import pytest

from aisle.training.recsys_data import MOVIELENS_DIR, load_movielens, shared_data_dir
from benchmarks.eval_recsys_http import movielens_probes, movielens_timeline

LIMIT = 300


@pytest.fixture(scope="module")
def replay():
    if not (shared_data_dir() / MOVIELENS_DIR).is_dir():
        pytest.skip(f"real data not found at {shared_data_dir() / MOVIELENS_DIR} (set AISLE_SHARED_DATA)")
    data = load_movielens()
    tags, nexts = movielens_probes(data, LIMIT)
    probes = sorted(tags + nexts, key=lambda p: (p.timestamp, p.kind, p.number))
    return data, tags, nexts, movielens_timeline(data, probes)


def test_no_probe_sees_its_target_or_the_future(replay) -> None:
    data, tags, nexts, timeline = replay
    releases = [release for release, _ in timeline]
    shift = timeline[-1][1]["timestamp"] - max(r.timestamp for r in data.ratings if r.timestamp <= timeline[-1][0])
    latest = list(itertools.accumulate((event["timestamp"] for _, event in timeline), max))
    first_posted: dict[tuple[str, str], int] = {}
    for at, (_, event) in enumerate(timeline):
        first_posted.setdefault((event["user_id"], event["item_id"]), at)
    for probe in tags + nexts:
        seen = bisect.bisect_left(releases, probe.timestamp)  # events posted before the probe
        assert seen, "every probe has some history"
        assert latest[seen - 1] < probe.timestamp + shift
        assert first_posted.get((f"mlu{probe.user}", str(probe.movie)), seen) >= seen


def test_the_tagger_history_is_every_earlier_rating_but_held_back_ones(replay) -> None:
    """Nothing else is withheld: a probe's user has all their earlier ratings of untagged movies."""
    data, tags, _, timeline = replay
    tagged = {(probe.user, probe.movie) for probe in tags}
    releases = [release for release, _ in timeline]
    probe = tags[len(tags) // 2]
    seen = {
        event["item_id"]
        for _, event in timeline[: bisect.bisect_left(releases, probe.timestamp)]
        if event["user_id"] == f"mlu{probe.user}"
    }
    earlier = {
        str(r.movie)
        for r in data.ratings
        if r.user == probe.user and r.timestamp < probe.timestamp and (r.user, r.movie) not in tagged
    }
    assert earlier <= seen and str(probe.movie) not in seen
