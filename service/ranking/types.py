"""The data passed between retrieval, personalization and the reranker."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from aisle.index.loaded import LoadedIndex
    from aisle.index.selection import RowSelection


@dataclass(frozen=True)
class UserAffinity:
    """How much a user leans towards each category and brand of one item table, each in [0, 1].

    Attributes:
        category: score per category code (``ItemTable.category_codes``): 0 for a category the
            user shows no more interest in than the catalogue's own share of it, towards 1 for
            one they buy almost only.
        brand: the same per brand code (``ItemTable.brand_codes``).
    """

    category: np.ndarray
    brand: np.ndarray

    @staticmethod
    def lookup(scores: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """``scores[codes]``, 0 for codes without a score (none, or added by a live change since)."""
        known = (codes >= 0) & (codes < len(scores))
        return np.where(known, scores[np.where(known, codes, 0)] if len(scores) else 0.0, 0.0)


@dataclass(frozen=True)
class UserContext:
    """What the service knows about the requesting user or session, for ranking.

    Attributes:
        profile: unit vector in the text space (recency-decayed average of interacted items),
            or None with no usable history.
        mass: the decayed weight mass behind ``profile``; the personal share grows with it.
        price_band: the user's usual price range (from purchases and carts), if known.
        purchased_recently: item ids bought within the exclusion window.
        top_categories: the user's strongest category affinities, strongest first.
        top_brands: the user's strongest brand affinities, strongest first.
        personal_share: the profile's share of a blended relevance when personalization has
            its own setting for it; None uses ``index.profile.personal_share(mass)``.
        together: ``(rows, scores)`` of the items bought with or after the user's strongest items
            (best 1.0), in the rows of the version the request is served by, or None.
        together_weight: how much ``together`` adds to a search or similar-items relevance.
        image_profile: unit vector in the image space (the pictures of interacted items), or
            None without a usable one; it refines ``profile``, never replaces it.
        affinity: the user's category and brand affinities in the codes of the served
            version (``aisle.service.personal.affinity``), or None (no history, not a search).
    """

    profile: np.ndarray | None = None
    mass: float = 0.0
    price_band: tuple[float, float] | None = None
    purchased_recently: frozenset[str] = frozenset()
    top_categories: tuple[str, ...] = ()
    top_brands: tuple[str, ...] = ()
    personal_share: float | None = None
    together: tuple[np.ndarray, np.ndarray] | None = None
    together_weight: float = 0.0
    image_profile: np.ndarray | None = None
    affinity: UserAffinity | None = None

    @property
    def is_anonymous(self) -> bool:
        return self.profile is None


ANONYMOUS = UserContext()


@dataclass
class Candidates:
    """Rows of one index version with the score parts retrieval produced for each.

    All arrays have one entry per candidate. ``relevance`` is what the reranker starts from
    (e.g. the fused query/lexical/personal score); the parts are kept for explanations.
    """

    rows: np.ndarray
    relevance: np.ndarray
    parts: dict[str, np.ndarray] = field(default_factory=dict)
    #: Which retriever found each candidate (``dense``, ``lexical``, ``image`` or a ``+`` of them,
    #: ``pin``).
    sources: np.ndarray | None = None
    #: The candidates' unit vectors (one row per candidate) when retrieval already gathered
    #: them; the reranker's diversity step uses them instead of reading the index again.
    vectors: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.rows)


@dataclass(frozen=True)
class Hit:
    """A ranked result: the item's row, its final score and, when asked, the parts of it."""

    row: int
    score: float
    explain: dict[str, Any] | None = None


class CandidateSource(Protocol):
    """Where a surface without a query gets its candidates (recommendations: the profile service).

    ``Engine.recommend`` passes the filters' selection and the rows the rules exclude; the
    source returns scored candidates of ``index``'s version within them.
    """

    def candidates(
        self, index: LoadedIndex, *, n: int, selection: RowSelection | None, exclude_rows: np.ndarray
    ) -> Candidates: ...
