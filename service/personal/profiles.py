"""ProfileService: every user's and session's profile, popularity and co-occurrence, in memory.

Everything here is derived from the event log and bound to one index version (item rows and
vectors): ``attach(engine)`` replays the log into a fresh ``_Derived`` and swaps it in, at
start-up and whenever the served version changes; ``apply`` (the store's commit hook) keeps it
current in O(d) per event. Each derived state remembers the last event sequence number it holds,
so events committed during a rebuild are caught up exactly once. With several worker processes
on one data directory, each worker also reads, at most every ``refresh_s``, the events other
workers committed, so every worker's profiles follow the whole log.

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
from collections.abc import Callable, Iterable
from dataclasses import dataclass

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

log = logging.getLogger(__name__)
TEXT_SPACE = "text"
#: How many recently viewed items a view keeps (the "recently viewed" surface).
RECENT_VIEWS = 20
BROWSE_TYPES = ("view", "click")
#: Sessions are swept for expiry every this many applied events (and whenever over the cap).
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


class _Derived:
    """All state derived from the event log for one index version (rows and vectors are its)."""

    def __init__(self, index: LoadedIndex, config: PersonalConfig, clock: Callable[[], float] = time.time) -> None:
        self.index = index
        self.clock = clock
        self._since_sweep = 0
        self.binding = SpaceBinding.of(index)
        self.config = config
        self.vectors = {name: space.vectors for name, space in index.spaces.items()}
        self.dims = {name: int(vectors.shape[1]) for name, vectors in self.vectors.items()}
        self.users: dict[str, ProfileState] = {}
        self.sessions: dict[str, SessionState] = {}
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

    def caught_up_to(self, seq: int) -> None:
        """Records that every committed event up to ``seq`` has been read and applied."""
        if seq > self.floor:
            self.floor = seq
            self.above = {applied for applied in self.above if applied > seq}

    def _new_state(self) -> ProfileState:
        return ProfileState(self.dims, self.config.decay)

    def _user(self, key: str) -> ProfileState:
        state = self.users.get(key)
        if state is None:
            state = self.users[key] = self._new_state()
        return state

    def _session(self, key: str) -> SessionState:
        state = self.sessions.get(key)
        if state is None:
            state = self.sessions[key] = SessionState(self._new_state(), self._new_state())
        return state

    def sweep(self, now: float) -> int:
        """Forgets anonymous sessions idle for ``session_ttl_s``, then the longest idle beyond
        ``max_sessions``; returns how many. Users they were linked to keep what was merged."""
        cutoff = now - self.config.session_ttl_s
        expired = [key for key, session in self.sessions.items() if session.last_ts < cutoff]
        excess = len(self.sessions) - len(expired) - self.config.max_sessions
        if excess > 0:
            # Oldest first, down to 90% of the cap, so that sweeps stay rare under pressure.
            excess += self.config.max_sessions // 10
            alive = sorted(
                (session.last_ts, key) for key, session in self.sessions.items() if session.last_ts >= cutoff
            )
            expired.extend(key for _, key in alive[:excess])
        for key in expired:
            del self.sessions[key]
            self.cooccurrence.forget_actor(key)
        return len(expired)

    def apply(self, event: StoredEvent) -> None:
        self._since_sweep += 1
        if self._since_sweep >= SWEEP_EVERY or len(self.sessions) > self.config.max_sessions:
            self._since_sweep = 0
            self.sweep(self.clock())
        if event.seq:
            if event.seq <= self.floor or event.seq in self.above:
                return  # already applied: the log is replayed, never double-counted
            self.above.add(event.seq)
            while self.floor + 1 in self.above:  # one process alone keeps ``above`` empty
                self.floor += 1
                self.above.remove(self.floor)
        row = self.index.items.row_of.get(event.item_id)
        vectors: dict[str, np.ndarray] = {}
        if row is not None:
            for name, matrix in self.vectors.items():
                vector = np.asarray(matrix[row])
                if name == TEXT_SPACE or np.any(vector):  # items without an image have zero rows
                    vectors[name] = vector
            self.popularity.add(row, event.type, event.timestamp)
        args = (row, event.type, event.timestamp, vectors)
        if event.user_key is not None:
            user = self._user(event.user_key)
            if row is not None and event.type == "purchase":
                before = user.items.get((row, "purchase"))
                if before is None:
                    self.repurchase.first_purchase(row)
                else:
                    # Out of order, the distance to the latest purchase stands in for the interval.
                    self.repurchase.repeat_purchase(row, abs(event.timestamp - before.last_ts))
            user.add(*args)
            if event.session_key is not None:
                session = self._session(event.session_key)
                session.identified.add(*args)
                if event.user_key not in session.users:
                    session.users.add(event.user_key)
                    user.merge(session.anonymous)
                    user.linked_sessions += 1
        elif event.session_key is not None:
            session = self._session(event.session_key)
            session.anonymous.add(*args)
            for user_key in session.users:
                self.users[user_key].add(*args)
        actor = event.user_key or event.session_key
        if row is not None and actor is not None:
            self.cooccurrence.add(actor, row, event.type, event.timestamp)

    def states(self, user_key: str | None, session_key: str | None) -> list[ProfileState]:
        """The states whose union is the requester's history (see the module docstring)."""
        user = self.users.get(user_key) if user_key else None
        session = self.sessions.get(session_key) if session_key else None
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
    ) -> None:
        self.hasher = hasher
        self.config = config
        self.store = store
        self.clock = clock
        self.refresh_s = refresh_s
        self._lock = threading.RLock()
        self._derived: _Derived | None = None
        self._refreshed = 0.0

    def attach(self, engine: Engine) -> None:
        """(Re)builds everything for ``engine``'s index version from the event log, then swaps."""
        started = time.perf_counter()
        derived = _Derived(engine.index, self.config, self.clock)
        replayed = self._replay(derived, self.store.iter_events() if self.store else ())
        with self._lock:
            if self.store is not None:  # events committed while replaying
                replayed += self._replay(derived, self.store.iter_events(after_seq=derived.floor))
            self._derived = derived
            self._refreshed = time.monotonic()
        log.info(
            "profiles of %d users and %d sessions built from %d events for version %s in %.2f s",
            len(derived.users),
            len(derived.sessions),
            replayed,
            engine.version,
            time.perf_counter() - started,
        )

    def follow(self, engine: Engine) -> None:
        """Moves to a newer snapshot of the same version (live catalogue changes applied).

        Rows are stable within a version (``aisle.index.live``), so the state stays valid: only new
        products' rows are added, and their vectors read from the new snapshot.
        """
        with self._lock:
            derived = self._derived
            if derived is None or derived.engine.index.path != engine.index.path:
                return
            derived.engine = engine
            derived.vectors = {name: space.vectors for name, space in engine.index.spaces.items()}
            derived.popularity.grow(len(engine.index))

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
        """How many users and sessions have profiles (for metrics and logs)."""
        with self._lock:
            derived = self._derived
            if derived is None:
                return {"users": 0, "sessions": 0}
            return {"users": len(derived.users), "sessions": len(derived.sessions)}
