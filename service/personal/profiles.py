"""ProfileService: every user's and session's profile, popularity and co-occurrence.

Everything here is derived from the event log and bound to one index version (item rows and
vectors). ``attach(engine)`` builds the statistics (popularity, repeat purchases, co-occurrence)
for a version, from a snapshot and the events after it (``aisle.service.personal.snapshot``) or
from the whole log, and swaps them in, at start-up and whenever the served version changes;
``apply`` (the store's commit hook) keeps them current in O(d) per event. Profiles are read from
the log on a shopper's first request and kept in a bounded LRU (``max_profiles`` users,
``max_sessions`` sessions): memory does not grow with the number of shoppers, and start-up does
not build them. Each derived state remembers the last event sequence number it holds, so events
committed during a rebuild are caught up exactly once. With several worker processes (or
replicas over PostgreSQL), each also reads, at most every ``refresh_s``, the events the others
committed, so every worker follows the whole log.

Who an event counts for:
* the user of its ``user_id``;
* the session of its ``session_id``;
* an anonymous event (session, no user) also counts for every user its session is linked to; a
  session is linked to a user by any event carrying both ids, and its earlier anonymous events
  are merged into that user at that moment (later ones are added directly).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aisle.index.loaded import LoadedIndex
from aisle.index.profile import ProfileVector, SpaceBinding, combine_profiles, freshness
from aisle.index.profile.state import ProfileState, SessionState, merged_item_weights
from aisle.service.engine import Engine
from aisle.service.events.identity import IdHasher
from aisle.service.events.store import EventStore, StoredEvent
from aisle.service.personal.config import PersonalConfig
from aisle.service.personal.cooccurrence import CoOccurrence
from aisle.service.personal.popularity import Popularity
from aisle.service.personal.repurchase import Repurchase
from aisle.service.personal.snapshot import ProfileSnapshots

log = logging.getLogger(__name__)
TEXT_SPACE = "text"
#: How many recently viewed items a view keeps (the "recently viewed" surface).
RECENT_VIEWS = 20
BROWSE_TYPES = ("view", "click")
#: Sessions in memory are swept for idleness every this many applied events.
SWEEP_EVERY = 4096


@dataclass(frozen=True)
class ProfileView:
    """A profile as read at one moment (a user, a session, or a user with a new session).

    Attributes:
        index: the version the profiles were built for (item rows are its rows).
        binding: that version and its model fingerprint (``SpaceBinding``).
        profiles: the profile vector per space.
        item_weights: weight per (row, event type), as the profile vector weighs them.
        last_purchase: row → time of its latest purchase.
        due_again: consumables bought before whose typical repurchase interval has passed.
        in_cart: row → time it was last added to the cart, for items not bought since.
        recently_viewed: rows viewed or clicked, latest first.
        freshness: the fraction of its share the profile keeps after the customer's absence.
    """

    index: LoadedIndex
    binding: SpaceBinding
    profiles: dict[str, ProfileVector]
    item_weights: dict[tuple[int, str], float]
    last_purchase: dict[int, float]
    due_again: frozenset[int]
    in_cart: dict[int, float]
    recently_viewed: tuple[int, ...]
    counts: dict[str, int]
    linked_sessions: int
    first_ts: float | None
    last_ts: float | None
    now: float
    freshness: float = 1.0

    @property
    def text(self) -> ProfileVector:
        return self.profiles[TEXT_SPACE]

    def weight_by_row(self) -> dict[int, float]:
        """Weight per item row, all event types together."""
        totals: dict[int, float] = {}
        for (row, _), weight in self.item_weights.items():
            totals[row] = totals.get(row, 0.0) + weight
        return totals


@dataclass(slots=True)
class _ResidentUser:
    """A user's profile in memory, and the sessions linked to it so far."""

    state: ProfileState
    sessions: set[str] = field(default_factory=set)


Loader = Callable[[str, str], list[StoredEvent]]


class _Derived:
    """All state derived from the event log for one index version (rows and vectors are its).

    Two kinds of state, bounded separately:

    * **Statistics** (popularity, repeat purchases, co-occurrence pairs): one array or table per
      catalogue, built by replaying the log (or restored from a snapshot) and kept current.
      Counting one event needs its actor's *memory*: the recent events co-occurrence pairs with
      and, for a user, the latest purchase time per item. Memories live in an LRU of at most
      ``max_profiles`` actors; a missing one is read back from the log (``loader``).
    * **Profiles** (users and sessions): never built in bulk. A profile is read from the log on
      its first request, kept in an LRU (``max_profiles`` users, ``max_sessions`` sessions) and
      updated by every later event while it stays in memory.

    Everything read back from the log holds exactly the events this state has applied (``applied``),
    so events other processes committed but not yet read here are counted once, when they are.
    """

    def __init__(
        self,
        index: LoadedIndex,
        config: PersonalConfig,
        clock: Callable[[], float] = time.time,
        loader: Loader | None = None,
    ) -> None:
        self.index = index
        self.clock = clock
        self.loader = loader
        self.binding = SpaceBinding.of(index)
        self.config = config
        self.vectors = {name: space.vectors for name, space in index.spaces.items()}
        self.dims = {name: int(vectors.shape[1]) for name, vectors in self.vectors.items()}
        self.users: OrderedDict[str, _ResidentUser] = OrderedDict()
        self.sessions: OrderedDict[str, SessionState] = OrderedDict()
        #: session key → resident users linked to it (their anonymous events reach those users).
        self.linked: dict[str, set[str]] = {}
        #: actor key → its latest purchase time per row (users; sessions keep an empty dict).
        self.memories: OrderedDict[str, dict[int, float]] = OrderedDict()
        self.popularity = Popularity(len(index), config.decay, config.popularity_half_life_s)
        self.repurchase = Repurchase(len(index))
        self.cooccurrence = CoOccurrence(
            config.decay,
            window_s=config.bought_together_window_s,
            after_half_life=config.bought_after_half_life,
            before_weight=config.bought_before_weight,
        )
        # Every event with seq <= floor is applied, plus those in ``above`` (events this process
        # committed itself, ahead of events other processes committed but not yet read).
        self.floor = 0
        self.above: set[int] = set()
        #: True while replaying the whole log from its start: an actor without a memory is new.
        self.from_start = False
        self._since_sweep = 0
        #: The store's erasure counter read before this state's first event (snapshots record it).
        self.erasures = 0

    def applied(self, seq: int) -> bool:
        return seq <= self.floor or seq in self.above

    def caught_up_to(self, seq: int) -> None:
        """Records that every committed event up to ``seq`` has been read and applied."""
        if seq > self.floor:
            self.floor = seq
            self.above = {applied for applied in self.above if applied > seq}

    def _new_state(self) -> ProfileState:
        return ProfileState(self.dims, self.config.decay)

    def _read(self, kind: str, key: str, skip: int = 0) -> list[StoredEvent]:
        """The applied events of a user's or a session's history (``loader``), but ``skip``."""
        if self.loader is None:
            return []
        return [event for event in self.loader(kind, key) if event.seq != skip and self.applied(event.seq)]

    def _item(self, event: StoredEvent) -> tuple[int | None, dict[str, np.ndarray]]:
        row = self.index.items.row_of.get(event.item_id)
        vectors: dict[str, np.ndarray] = {}
        if row is not None:
            for name, matrix in self.vectors.items():
                vector = np.asarray(matrix[row])
                if name == TEXT_SPACE or np.any(vector):  # items without an image have zero rows
                    vectors[name] = vector
        return row, vectors

    # Actors' memories: what counting an event into the statistics needs.

    def _memory(self, actor: str, is_user: bool, seq: int) -> dict[int, float]:
        memory = self.memories.get(actor)
        if memory is not None:
            self.memories.move_to_end(actor)
            return memory
        memory = {}
        history: list[tuple[int, float, float]] = []
        if not self.from_start:
            for event in self._read("user" if is_user else "session", actor, skip=seq):
                if (event.user_key if is_user else event.user_key is None and event.session_key) != actor:
                    continue  # another actor's event (an anonymous one joining this user, say)
                row = self.index.items.row_of.get(event.item_id)
                if row is None:
                    continue
                history.append((row, self.config.decay.weight(event.type), event.timestamp))
                if is_user and event.type == "purchase":
                    memory[row] = max(memory.get(row, -np.inf), event.timestamp)
            self.cooccurrence.remember_actor(actor, history)
        self.memories[actor] = memory
        if not self.from_start:
            self._trim_memories()
        return memory

    def _trim_memories(self) -> None:
        while len(self.memories) > self.config.max_profiles:
            actor, _ = self.memories.popitem(last=False)
            self.cooccurrence.forget_actor(actor)

    # Profiles: read from the log on demand, kept current while in memory.

    def user(self, key: str) -> ProfileState:
        """A user's profile (empty when they have no events), from memory or from the log."""
        resident = self.users.get(key)
        if resident is not None:
            self.users.move_to_end(key)
            return resident.state
        resident = _ResidentUser(self._new_state())
        state, linked = resident.state, resident.sessions
        waiting: dict[str, ProfileState] = {}  # anonymous events of sessions not linked yet
        for event in self._read("user", key):
            row, vectors = self._item(event)
            args = (row, event.type, event.timestamp, vectors)
            session = event.session_key
            if event.user_key == key:
                state.add(*args)
                if session is not None and session not in linked:
                    linked.add(session)
                    state.merge(waiting.pop(session) if session in waiting else self._new_state())
                    state.linked_sessions += 1
            elif event.user_key is None and session is not None:
                if session in linked:
                    state.add(*args)
                else:
                    waiting.setdefault(session, self._new_state()).add(*args)
        self._admit_user(key, resident)
        return state

    def _admit_user(self, key: str, resident: _ResidentUser) -> None:
        self.users[key] = resident
        for session in resident.sessions:
            self.linked.setdefault(session, set()).add(key)
        while len(self.users) > self.config.max_profiles:
            self._evict_user(next(iter(self.users)))

    def _evict_user(self, key: str) -> None:
        resident = self.users.pop(key)
        for session in resident.sessions:
            users = self.linked.get(session)
            if users is not None:
                users.discard(key)
                if not users:
                    del self.linked[session]

    def session(self, key: str) -> SessionState:
        """A session's profile (empty without events), from memory or from the log."""
        state = self.sessions.get(key)
        if state is not None:
            self.sessions.move_to_end(key)
            return state
        state = SessionState(self._new_state(), self._new_state())
        for event in self._read("session", key):
            row, vectors = self._item(event)
            args = (row, event.type, event.timestamp, vectors)
            if event.user_key is None:
                state.anonymous.add(*args)
            else:
                state.identified.add(*args)
                state.users.add(event.user_key)
        self.sessions[key] = state
        while len(self.sessions) > self.config.max_sessions:
            self.sessions.popitem(last=False)
        return state

    def sweep(self, now: float) -> int:
        """Drops from memory the sessions idle for ``session_ttl_s``; returns how many. Their events
        stay in the log, so a session that comes back is read back whole."""
        cutoff = now - self.config.session_ttl_s
        idle = [key for key, session in self.sessions.items() if session.last_ts < cutoff]
        for key in idle:
            del self.sessions[key]
        return len(idle)

    def apply(self, event: StoredEvent) -> None:
        self._since_sweep += 1
        if self._since_sweep >= SWEEP_EVERY:
            self._since_sweep = 0
            self.sweep(self.clock())
        if event.seq:
            if self.applied(event.seq):
                return  # already applied: the log is replayed, never double-counted
            self.above.add(event.seq)
            while self.floor + 1 in self.above:  # one process alone keeps ``above`` empty
                self.floor += 1
                self.above.remove(self.floor)
        row, vectors = self._item(event)
        actor = event.user_key or event.session_key
        if row is not None:
            self.popularity.add(row, event.type, event.timestamp)
            if actor is not None:
                memory = self._memory(actor, event.user_key is not None, event.seq)
                if event.user_key is not None and event.type == "purchase":
                    before = memory.get(row)
                    if before is None:
                        self.repurchase.first_purchase(row)
                    else:
                        # Out of order, the distance to the latest purchase stands in for the interval.
                        self.repurchase.repeat_purchase(row, abs(event.timestamp - before))
                    memory[row] = event.timestamp if before is None else max(before, event.timestamp)
                self.cooccurrence.add(actor, row, event.type, event.timestamp)
        self._apply_to_profiles(event, (row, event.type, event.timestamp, vectors))

    def _apply_to_profiles(self, event: StoredEvent, args: tuple) -> None:
        """Adds the event to the profiles in memory; the others read it from the log when needed."""
        user_key, session_key = event.user_key, event.session_key
        session = self.sessions.get(session_key) if session_key is not None else None
        if user_key is not None:
            resident = self.users.get(user_key)
            if resident is not None:
                resident.state.add(*args)
            if session is not None:
                session.identified.add(*args)
                session.users.add(user_key)
            if resident is not None and session_key is not None and session_key not in resident.sessions:
                if session is None:
                    # Linking merges the session's anonymous history, which is not in memory:
                    # the user is read back whole from the log on their next request.
                    self._evict_user(user_key)
                    return
                resident.state.merge(session.anonymous)
                resident.state.linked_sessions += 1
                resident.sessions.add(session_key)
                self.linked.setdefault(session_key, set()).add(user_key)
        elif session_key is not None:
            if session is not None:
                session.anonymous.add(*args)
            for linked_user in self.linked.get(session_key, ()):
                self.users[linked_user].state.add(*args)

    def states(self, user_key: str | None, session_key: str | None) -> list[ProfileState]:
        """The states whose union is the requester's history (see the module docstring)."""
        user = self.user(user_key) if user_key else None
        session = self.session(session_key) if session_key else None
        if user is not None and not user.total_events:
            user = None
        if session is not None and not (session.anonymous.total_events or session.identified.total_events):
            session = None
        if user is not None and session is not None:
            return [user] if user_key in session.users else [user, session.anonymous]
        if user is not None:
            return [user]
        if session is not None:
            # A bare session id sees all of its events; a user without events of their own sees
            # only the session's anonymous ones (its identified events belong to other users).
            return session.parts() if user_key is None else [session.anonymous]
        return []


class ProfileService:
    """Per-user and per-session profiles kept current with the event log.

    Args:
        hasher: turns raw user and session ids into the stored keys.
        config: weights, half-lives and blending settings.
        store: the event log to rebuild from (None: start empty, e.g. in unit tests).
        clock: the current Unix time (injectable for tests).
    """

    def __init__(
        self,
        hasher: IdHasher,
        config: PersonalConfig,
        store: EventStore | None = None,
        clock: Callable[[], float] = time.time,
        refresh_s: float = 0.5,
        snapshots: ProfileSnapshots | None = None,
    ) -> None:
        self.hasher = hasher
        self.config = config
        self.store = store
        self.clock = clock
        self.refresh_s = refresh_s
        self.snapshots = snapshots
        self._lock = threading.RLock()
        self._derived: _Derived | None = None
        self._refreshed = 0.0
        #: How the last ``attach`` went: ``restored`` (from a snapshot), ``snapshot_seconds`` (reading
        #: it), ``replayed`` events, ``seconds`` in all.
        self.last_attach: dict[str, float | int | bool] = {}

    def _loader(self) -> Loader | None:
        store = self.store
        if store is None:
            return None

        def load(kind: str, key: str) -> list[StoredEvent]:
            return store.events_of_user(key) if kind == "user" else store.events_of_session(key)

        return load

    def attach(self, engine: Engine) -> None:
        """(Re)builds the statistics for ``engine``'s index version, then swaps.

        From the snapshot and the events after it when a usable snapshot exists, else from the
        whole log (and a snapshot is then written, so that the next start is short). Profiles
        start empty in memory and are read from the log on demand.
        """
        started = time.perf_counter()
        derived = _Derived(engine.index, self.config, self.clock, self._loader())
        # Read before the first event: an erasure from now on moves the counter past the one a
        # snapshot of this state records, and that snapshot is then never used.
        derived.erasures = self.store.erasures() if self.store is not None else 0
        restored = False
        if self.snapshots is not None and self.store is not None:
            restored = self.snapshots.restore(derived, derived.erasures, self.store.last_seq())
        snapshot_s = time.perf_counter() - started
        derived.from_start = not restored
        replayed = self._replay(derived, self.store.iter_events(after_seq=derived.floor) if self.store else ())
        derived.from_start = False
        derived._trim_memories()
        with self._lock:
            if self.store is not None:  # events committed while replaying
                replayed += self._replay(derived, self.store.iter_events(after_seq=derived.floor))
            self._derived = derived
            self._refreshed = time.monotonic()
        self.last_attach = {
            "restored": restored,
            "snapshot_seconds": snapshot_s,
            "replayed": replayed,
            "seconds": time.perf_counter() - started,
        }
        log.info(
            "statistics for version %s built from %s and %d events in %.2f s",
            engine.version,
            "a snapshot" if restored else "the start of the log",
            replayed,
            time.perf_counter() - started,
        )
        if not restored and self.store is not None:
            self.snapshot()

    def snapshot(self) -> Path | None:
        """Writes a snapshot of the statistics (None without a snapshot directory or state).

        It records the erasure counter the state was built after, so a state that still counts
        an erased shopper's events is never restored once the erasure is known.
        """
        if self.snapshots is None:
            return None
        with self._lock:
            if self._derived is None:
                return None
            captured = self.snapshots.capture(self._derived)
            erasures = self._derived.erasures
        return self.snapshots.write(captured, erasures)

    def follow(self, engine: Engine) -> None:
        """Moves to a newer snapshot of the same version (live catalogue changes applied).

        Rows are stable within a version (``aisle.index.live``), so the state stays valid: only new
        products' rows are added, and their vectors read from the new snapshot.
        """
        with self._lock:
            derived = self._derived
            if derived is None or derived.index.path != engine.index.path:
                return
            derived.index = engine.index
            derived.vectors = {name: space.vectors for name, space in engine.index.spaces.items()}
            derived.popularity.grow(len(engine.index))
            derived.repurchase.grow(len(engine.index))

    @staticmethod
    def _replay(derived: _Derived, events: Iterable[StoredEvent]) -> int:
        """Applies ``events`` (all committed events above the floor, in order)."""
        count = 0
        newest = 0
        for event in events:
            derived.apply(event)
            newest = max(newest, event.seq)
            count += 1
        derived.caught_up_to(newest)
        return count

    def refresh(self) -> int:
        """Applies the events other processes committed since the last read; returns how many."""
        with self._lock:
            if self.store is None or self._derived is None:
                return 0
            self._refreshed = time.monotonic()
            return self._replay(self._derived, self.store.iter_events(after_seq=self._derived.floor))

    def apply(self, events: list[StoredEvent]) -> None:
        """Adds newly committed events (the event store's ``on_commit`` hook)."""
        with self._lock:
            if self._derived is None:
                return
            for event in events:
                self._derived.apply(event)

    @property
    def attached(self) -> bool:
        return self._derived is not None

    def keys(self, user_id: str | None, session_id: str | None) -> tuple[str | None, str | None]:
        return (self.hasher.user(user_id) if user_id else None, self.hasher.session(session_id) if session_id else None)

    def view(self, user_id: str | None, session_id: str | None) -> ProfileView | None:
        """The requester's profile now, or None when nothing is known about them."""
        user_key, session_key = self.keys(user_id, session_id)
        if self.store is not None and time.monotonic() - self._refreshed >= self.refresh_s:
            self.refresh()
        now = self.clock()
        with self._lock:
            derived = self._derived
            if derived is None:
                return None
            states = derived.states(user_key, session_key)
            if not states:
                return None
            profiles = {name: combine_profiles([state.spaces[name] for state in states]) for name in derived.dims}
            counts: dict[str, int] = {}
            for state in states:
                for event_type, count in state.counts.items():
                    counts[event_type] = counts.get(event_type, 0) + count
            latest: dict[str, dict[int, float]] = {"purchase": {}, "add_to_cart": {}, "browse": {}}
            for state in states:
                for (row, event_type), stat in state.items.items():
                    kind = "browse" if event_type in BROWSE_TYPES else event_type
                    if kind in latest:
                        latest[kind][row] = max(stat.last_ts, latest[kind].get(row, -np.inf))
            purchases = latest["purchase"]
            cart_cutoff = now - self.config.cart_window_s
            in_cart = {
                row: added
                for row, added in latest["add_to_cart"].items()
                if added >= cart_cutoff and purchases.get(row, -np.inf) < added
            }
            due = frozenset(
                row
                for row, when in purchases.items()
                if (interval := derived.repurchase.interval_s(row)) is not None and now - when >= interval
            )
            viewed = sorted(latest["browse"].items(), key=lambda kv: (-kv[1], kv[0]))[:RECENT_VIEWS]
            first = min(state.first_ts for state in states)
            last = max(state.last_ts for state in states)
            fresh = 1.0
            if np.isfinite(last):
                fresh = freshness(now - last, self.config.idle_half_life_s, self.config.idle_floor)
            return ProfileView(
                index=derived.index,
                binding=derived.binding,
                profiles=profiles,
                item_weights=merged_item_weights(states),
                last_purchase=purchases,
                due_again=due,
                in_cart=in_cart,
                recently_viewed=tuple(row for row, _ in viewed),
                counts=counts,
                linked_sessions=sum(state.linked_sessions for state in states),
                first_ts=first if np.isfinite(first) else None,
                last_ts=last if np.isfinite(last) else None,
                now=now,
                freshness=fresh if self.config.decay.decay else 1.0,
            )

    def popularity(self) -> tuple[LoadedIndex, Popularity] | None:
        """Popular items and the version whose rows they count."""
        with self._lock:
            return None if self._derived is None else (self._derived.index, self._derived.popularity)

    def cooccurrence(self) -> tuple[LoadedIndex, CoOccurrence] | None:
        """Co-occurrence pairs and the version whose rows they pair."""
        with self._lock:
            return None if self._derived is None else (self._derived.index, self._derived.cooccurrence)

    def counts(self) -> dict[str, int]:
        """How many users' and sessions' profiles (and actors' memories) are in memory now."""
        with self._lock:
            derived = self._derived
            if derived is None:
                return {"users": 0, "sessions": 0, "memories": 0}
            return {"users": len(derived.users), "sessions": len(derived.sessions), "memories": len(derived.memories)}
