"""Memory per profile: what a million users or anonymous sessions cost a worker.

Usage::

    python -m benchmarks.bench_profile_memory [--profiles 20000] [--dim 384]
        [--out benchmarks/results/profile_memory.json]

Builds ``--profiles`` user profiles (``aisle.index.profile.state.ProfileState``, exactly what the
service keeps per user) from a realistic mix of events on a catalogue of random unit vectors:
per user 8 purchases, 4 add-to-carts and 24 views on distinct items, plus the actor's recent
history that co-occurrence keeps. ``tracemalloc`` measures the bytes allocated; the result is
given per profile and per million profiles. Anonymous sessions are measured the same way (a
browsing session of 6 views).

A worker keeps at most ``max_profiles`` users' profiles and as many actors' recent histories,
and ``max_sessions`` sessions (least recently used first out; read back from the event log on
their next request), so ``bound_at_defaults`` is the most profiles take in one worker with the
shipped settings, however many shoppers the shop has.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
import tracemalloc
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from aisle.index.profile import DAY_S, DecayConfig
from aisle.index.profile.state import ProfileState, SessionState
from aisle.index.storage import atomic_write_json
from aisle.service.personal.cooccurrence import CoOccurrence

REPO = Path(__file__).resolve().parent.parent
USER_EVENTS = (("purchase", 8), ("add_to_cart", 4), ("view", 24))
SESSION_EVENTS = (("view", 6),)


def build(count: int, dim: int, mix: tuple[tuple[str, int], ...], session: bool, seed: int = 0) -> int:
    """Bytes allocated by ``count`` profiles (and their co-occurrence histories)."""
    rng = np.random.default_rng(seed)
    catalogue = rng.normal(size=(5000, dim)).astype(np.float32)
    catalogue /= np.linalg.norm(catalogue, axis=1, keepdims=True)
    config = DecayConfig()
    dims = {"text": dim}
    pairs = CoOccurrence(config, window_s=3600.0)
    now = time.time()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept: dict[str, object] = {}
    for number in range(count):
        key = f"{number:032x}"
        state = ProfileState(dims, config)
        events = [kind for kind, times in mix for _ in range(times)]
        rows = rng.choice(len(catalogue), size=len(events), replace=False)
        for position, (kind, row) in enumerate(zip(events, rows)):
            timestamp = now - (len(events) - position) * DAY_S
            state.add(int(row), kind, timestamp, {"text": catalogue[row]})
            # The actor's recent history, on two items only: the pair table (shared by all
            # actors, bounded per item by max_neighbours) stays out of the per-profile figure.
            pairs.add(key, position % 2, kind, timestamp)
        kept[key] = SessionState(state, ProfileState(dims, config)) if session else state
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del kept
    return used


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profiles", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "profile_memory.json")
    args = parser.parse_args(argv)
    results = {
        "command": " ".join(["python -m benchmarks.bench_profile_memory", *(argv or sys.argv[1:])]),
        "profiles": args.profiles,
        "dim": args.dim,
        "vector_storage": "float16 sums with a float64 scale per half-life group",
        "load_average": os.getloadavg(),
    }
    for name, mix, session in (("user", USER_EVENTS, False), ("anonymous_session", SESSION_EVENTS, True)):
        used = build(args.profiles, args.dim, mix, session)
        per = used / args.profiles
        results[name] = {
            "events": {kind: times for kind, times in mix},
            "bytes_per_profile": round(per),
            "mib_per_million": round(per * 1_000_000 / 2**20),
        }
        print(f"{name}: {per:,.0f} bytes per profile, {per * 1e6 / 2**30:.2f} GiB per million", flush=True)
    from aisle.service.settings import ServiceSettings

    defaults = ServiceSettings()
    bound = results["user"]["bytes_per_profile"] * defaults.max_profiles
    bound += results["anonymous_session"]["bytes_per_profile"] * defaults.max_sessions
    results["bound_at_defaults"] = {
        "max_profiles": defaults.max_profiles,
        "max_sessions": defaults.max_sessions,
        "mib": round(bound / 2**20),
        "note": "users and sessions resident at their caps, each with its actor's recent history",
    }
    results["item_storage"] = "one record array per profile: 28 bytes per (item, event type)"
    print(f"bound at the default caps: {bound / 2**20:,.0f} MiB per worker, whatever the number of shoppers")
    atomic_write_json(args.out, results)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
