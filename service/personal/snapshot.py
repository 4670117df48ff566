"""Snapshots of the statistics derived from the event log, so a restart replays only the tail.

A snapshot holds what replaying the whole log builds: popularity counts, repeat-purchase
statistics and co-occurrence pairs, with the sequence number of the last event they count
(``floor``, plus the few applied above it), and the memories of the actors in memory (their
last few events and latest purchase per item, under their keyed hashes: what counting their
next events needs, so that replaying the tail reads few of them back from the log). Profiles are
not in it: they are read from the log on demand (``aisle.service.personal.profiles``).

Files, in the data directory, owner-only:

* ``profiles-<floor>-<pid>-<n>.npz``: the arrays (``numpy.savez``; read back with pickling off);
* ``profiles-snapshot.json``: the manifest: which ``.npz``, its sha256, and what it is valid for
  (format, index version and model fingerprint, decay and co-occurrence settings, the event
  store, the store's erasure counter when the snapshot was taken).

Writing is crash-safe: the arrays are written to a temporary file, fsynced and renamed, then the
manifest likewise; files the manifest no longer names are removed afterwards. A ``kill -9`` at
any point leaves the previous manifest and its file, or the new ones. On start-up a snapshot
that does not verify or does not match (another version, other settings, another store, an
erasure or retention purge since: the counter moved) is ignored and the whole log is replayed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict
from itertools import count
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aisle.index.storage import atomic_file, atomic_write, sha256_file
from aisle.service.personal.cooccurrence import pair_arrays

if TYPE_CHECKING:
    from aisle.service.personal.profiles import _Derived

log = logging.getLogger(__name__)

MANIFEST = "profiles-snapshot.json"
PREFIX = "profiles-"
FORMAT = 1
#: Snapshot files not named by the manifest are removed once they are this old (another worker
#: on the same data directory may be about to name its own).
STALE_S = 600.0
_ARRAYS = (
    "popularity_counts",
    "repurchase_buyers",
    "repurchase_repeats",
    "repurchase_log_interval_sum",
    "pair_rows",
    "pair_others",
    "pair_weights",
    "above",
    "actors",
    "history_owner",
    "history_row",
    "history_weight",
    "history_ts",
    "purchase_owner",
    "purchase_row",
    "purchase_ts",
)
_serial = count()


def validity(derived: _Derived, store_id: str) -> dict[str, Any]:
    """What a snapshot must match to be used: version, model, settings that shape the counts, store."""
    config = derived.config
    shaping = {
        "decay": asdict(config.decay),
        "popularity_half_life_s": config.popularity_half_life_s,
        "bought_together_window_s": config.bought_together_window_s,
        "bought_after_half_life": config.bought_after_half_life,
        "bought_before_weight": config.bought_before_weight,
    }
    digest = hashlib.sha256(json.dumps(shaping, sort_keys=True, default=str).encode()).hexdigest()
    return {
        "format": FORMAT,
        "index_version": derived.binding.version,
        "fingerprint": derived.binding.fingerprint,
        "rows": len(derived.index),
        "settings": digest,
        "store": store_id,
    }


def _columns(rows: list[tuple], names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Tuples of (owner, row, float...) as one array per column (int64 for the first two)."""
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(names)
    return {
        name: np.array(column, dtype=np.int64 if position < 2 else np.float64)
        for position, (name, column) in enumerate(zip(names, columns, strict=True))
    }


class ProfileSnapshots:
    """Writes and reads the statistics snapshot of one data directory.

    Args:
        directory: the data directory (the manifest and arrays live directly in it).
        store_id: names the event store the counts come from (its path or redacted URL).
    """

    def __init__(self, directory: Path, store_id: str) -> None:
        self.directory = Path(directory)
        self.store_id = store_id

    @property
    def manifest_path(self) -> Path:
        return self.directory / MANIFEST

    def capture(self, derived: _Derived) -> dict[str, Any]:
        """Copies the state (call with the profiles' lock held: a consistent cut). Only copies:
        the packing into arrays (``pack``) runs after the lock is released, so events keep being
        acknowledged while a snapshot is written."""
        counts, ref, peak = derived.popularity.arrays()
        actors = list(derived.memories)  # least recently used first: restored in that order
        return {
            "meta": {
                **validity(derived, self.store_id),
                "floor": derived.floor,
                "popularity_ref": ref,
                "popularity_peak": peak,
            },
            "counts": counts,
            "repurchase": derived.repurchase.arrays(),
            "pairs": derived.cooccurrence.pairs_copy(),
            "above": sorted(derived.above),
            "actors": actors,
            "histories": derived.cooccurrence.recent_copy(actors),
            "memories": [dict(derived.memories[actor]) for actor in actors],
        }

    @staticmethod
    def pack(captured: dict[str, Any]) -> dict[str, Any]:
        """The captured copies as the snapshot's arrays (no lock needed)."""
        buyers, repeats, log_sum = captured["repurchase"]
        rows, others, weights = pair_arrays(captured["pairs"])
        actors = captured["actors"]
        history = [(owner, *entry) for owner, entries in enumerate(captured["histories"]) for entry in entries]
        purchases = [
            (owner, row, ts) for owner, memory in enumerate(captured["memories"]) for row, ts in memory.items()
        ]
        return {
            "meta": captured["meta"],
            "arrays": {
                "popularity_counts": captured["counts"],
                "repurchase_buyers": buyers,
                "repurchase_repeats": repeats,
                "repurchase_log_interval_sum": log_sum,
                "pair_rows": rows,
                "pair_others": others,
                "pair_weights": weights,
                "above": np.array(captured["above"], dtype=np.int64),
                "actors": np.array(actors, dtype="U") if actors else np.empty(0, dtype="U1"),
                **_columns(history, ("history_owner", "history_row", "history_weight", "history_ts")),
                **_columns(purchases, ("purchase_owner", "purchase_row", "purchase_ts")),
            },
        }

    def write(self, captured: dict[str, Any], erasures: int) -> Path:
        """Packs and writes a captured snapshot; ``erasures``: the erasure counter the captured
        state was built after (an erasure since moves the counter: the snapshot is not used)."""
        captured = self.pack(captured)
        meta = dict(captured["meta"])
        name = f"{PREFIX}{meta['floor']}-{os.getpid()}-{next(_serial)}.npz"
        path = self.directory / name

        def write_arrays(handle: Any) -> None:
            np.savez(handle, **captured["arrays"])

        atomic_write(path, write_arrays, mode=0o600)
        meta.update({"file": name, "sha256": sha256_file(path), "erasures": erasures, "written": time.time()})
        with atomic_file(self.manifest_path, text=True, mode=0o600) as handle:
            handle.write(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        self._remove_stale(keep=name)
        return path

    def _remove_stale(self, keep: str) -> None:
        """Removes this process's earlier files at once (after an erasure, the file that still
        held the shopper's last events goes with the rebuild's snapshot), other processes' once
        they are ``STALE_S`` old."""
        now = time.time()
        mine = f"-{os.getpid()}-"
        for other in self.directory.glob(f"{PREFIX}*.npz"):
            if other.name == keep:
                continue
            try:
                named = json.loads(self.manifest_path.read_text(encoding="utf-8")).get("file")
                if other.name != named and (mine in other.name or now - other.stat().st_mtime > STALE_S):
                    other.unlink()
            except (OSError, ValueError):
                continue  # another worker's rename or removal raced us: left for the next write

    def restore(self, derived: _Derived, erasures: int, last_seq: int) -> bool:
        """Loads the snapshot into a fresh ``derived``; False (with the reason logged) when there
        is none or it must not be used, and ``derived`` is then untouched."""
        try:
            meta = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return False
        except (OSError, ValueError) as exc:
            log.warning("profile snapshot manifest unreadable (%s); replaying the whole event log", exc)
            return False
        expected = {**validity(derived, self.store_id), "erasures": erasures}
        stale = sorted(key for key, value in expected.items() if meta.get(key) != value)
        if stale:
            log.info("profile snapshot not used (%s changed); replaying the whole event log", ", ".join(stale))
            return False
        if not isinstance(meta.get("floor"), int) or meta["floor"] > last_seq:
            log.warning("profile snapshot is ahead of the event store; replaying the whole event log")
            return False
        path = self.directory / str(meta.get("file", ""))
        try:
            if path.parent != self.directory or sha256_file(path) != meta.get("sha256"):
                log.warning("profile snapshot %s fails its checksum; replaying the whole event log", path.name)
                return False
            with np.load(path, allow_pickle=False) as stored:
                arrays = {name: stored[name] for name in _ARRAYS}
        except (OSError, ValueError, KeyError) as exc:
            log.warning("profile snapshot unreadable (%s); replaying the whole event log", exc)
            return False
        if len(arrays["popularity_counts"]) != len(derived.index):
            return False
        derived.popularity.restore(arrays["popularity_counts"], meta["popularity_ref"], meta["popularity_peak"])
        derived.repurchase.restore(
            arrays["repurchase_buyers"], arrays["repurchase_repeats"], arrays["repurchase_log_interval_sum"]
        )
        derived.cooccurrence.load_pairs(arrays["pair_rows"], arrays["pair_others"], arrays["pair_weights"])
        derived.floor = meta["floor"]
        derived.above = {int(seq) for seq in arrays["above"]}
        actors = arrays["actors"].tolist()
        histories: list[list[tuple[int, float, float]]] = [[] for _ in actors]
        for owner, row, weight, ts in zip(
            *(arrays[name].tolist() for name in ("history_owner", "history_row", "history_weight", "history_ts")),
            strict=True,
        ):
            histories[owner].append((row, weight, ts))
        memories: list[dict[int, float]] = [{} for _ in actors]
        for owner, row, ts in zip(
            *(arrays[name].tolist() for name in ("purchase_owner", "purchase_row", "purchase_ts")), strict=True
        ):
            memories[owner][row] = ts
        for actor, history, memory in zip(actors, histories, memories, strict=True):
            derived.memories[actor] = memory
            derived.cooccurrence.remember_actor(actor, history)
        return True
