"""One optimisation step of the encoder against the whole catalogue.

Both objectives score a "query side" against every catalogue item and apply a softmax
cross-entropy with the true item as the label, exactly the full ranking the evaluation does:

* next-item: the query side is the served profile of the history (``training.torch_profile``:
  the recency-decayed, type-weighted average of the history items' vectors), and the user's own
  history items are among the negatives, as they are when the service ranks without masking;
* search: the query side is the encoded query.

Scoring against every item needs every item's vector, but encoding the catalogue at each step is
far too slow. A bank holds the latest vector of every item; the items of the current batch are
encoded afresh (with gradients) and substituted into it, and their fresh vectors are written
back. The bank is recomputed in full at every validation, so no vector is ever more than one
validation interval old.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from index.profile import DecayConfig
from training.partial_encoder import ItemStates, PartialEncoder
from training.timeline import Timeline, pad_histories
from training.torch_profile import decayed_profiles
from training.train_data import NextItemCase, QueryPair


class CatalogTrainer:
    """Holds the encoder, the item states and the vector bank, and takes steps.

    Args:
        encoder: the split model.
        item_texts: catalogue texts, by row.
        decay: the served decay settings the profile is computed with.
        timeline: how untimed histories become events.
        temperature: softmax temperature of the cosine scores.
        fresh_history: how many of a history's most recent items are encoded afresh, with
            gradients; older ones (which weigh little after decay) take their bank vector.
            None encodes them all.
        cache_items: keep the frozen layers' output of every item in memory (else recompute).
    """

    def __init__(
        self,
        encoder: PartialEncoder,
        item_texts: Sequence[str],
        decay: DecayConfig,
        timeline: Timeline,
        temperature: float,
        fresh_history: int | None = 2,
        cache_items: bool = True,
        progress: object | None = None,
    ) -> None:
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, not {temperature}")
        self.encoder = encoder
        self.item_texts = list(item_texts)
        self.decay = decay
        self.timeline = timeline
        self.temperature = temperature
        self.fresh_history = fresh_history
        self.states = ItemStates(encoder, self.item_texts, progress=progress) if cache_items else None
        self.bank = self.encode_items()

    def _item_vectors(self, rows: Sequence[int], chunk: int = 64) -> torch.Tensor:
        """Vectors of item ``rows``, batched by similar length (less padding, bounded memory)."""
        states = self.states
        if states is not None:
            order = sorted(range(len(rows)), key=lambda i: states.length(rows[i]))
        else:
            order = sorted(range(len(rows)), key=lambda i: len(self.item_texts[rows[i]]))
        parts = []
        for start in range(0, len(order), chunk):
            chosen = [rows[i] for i in order[start:start + chunk]]
            if states is not None:
                parts.append(self.encoder.upper(*states.batch(chosen)))
            else:
                parts.append(self.encoder.encode([self.item_texts[row] for row in chosen]))
        inverse = torch.empty(len(order), dtype=torch.long)
        inverse[torch.tensor(order, dtype=torch.long)] = torch.arange(len(order))
        return torch.cat(parts)[inverse]

    @torch.no_grad()
    def encode_items(self) -> torch.Tensor:
        """Every item's current vector ``(items, dim)`` (eval mode, no dropout)."""
        self.encoder.train(False)
        return self._item_vectors(list(range(len(self.item_texts)))).contiguous()

    def refresh_bank(self) -> None:
        self.bank = self.encode_items()

    def _table_with(self, rows: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(table, fresh, index)``: the bank with ``rows`` replaced by freshly encoded vectors."""
        index = torch.tensor(rows, dtype=torch.long)
        fresh = self._item_vectors(rows)
        return self.bank.index_copy(0, index, fresh), fresh, index

    def sequence_loss(self, cases: Sequence[NextItemCase]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Cross-entropy of each next item against the catalogue, and what to write back."""
        padded = pad_histories(cases, self.timeline, self.decay)
        targets = torch.tensor([c.target for c in cases], dtype=torch.long)
        width = padded.rows.shape[1]
        recent = slice(0 if self.fresh_history is None else max(0, width - self.fresh_history), None)
        recent_rows = padded.rows[:, recent][padded.valid[:, recent]]
        rows = sorted(set(recent_rows.tolist()) | set(targets.tolist()))
        table, fresh, index = self._table_with(rows)
        history_vectors = table[torch.from_numpy(padded.rows)]
        profiles = decayed_profiles(
            history_vectors, torch.from_numpy(padded.log2_weight).float(), torch.from_numpy(padded.valid)
        )
        logits = profiles @ table.T / self.temperature
        return torch.nn.functional.cross_entropy(logits, targets), fresh, index

    def query_loss(self, pairs: Sequence[QueryPair], positives: dict[str, frozenset[int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Cross-entropy of each labelled product against the catalogue for its query.

        A query's other relevant products are removed from its negatives.
        """
        targets = torch.tensor([p.target for p in pairs], dtype=torch.long)
        rows = sorted(set(targets.tolist()))
        table, fresh, index = self._table_with(rows)
        queries = self.encoder.encode([p.query for p in pairs])
        logits = queries @ table.T / self.temperature
        for i, pair in enumerate(pairs):
            others = [r for r in positives.get(pair.query_id, ()) if r != pair.target]
            if others:
                logits[i, others] = float("-inf")
        return torch.nn.functional.cross_entropy(logits, targets), fresh, index

    def write_back(self, fresh: torch.Tensor, index: torch.Tensor) -> None:
        self.bank.index_copy_(0, index, fresh.detach())

    @torch.no_grad()
    def sequence_ranks(self, cases: Sequence[NextItemCase], batch_size: int = 512) -> list[int]:
        """0-based full-catalogue rank of each case's target under the current bank."""
        ranks: list[int] = []
        for start in range(0, len(cases), batch_size):
            chunk = cases[start:start + batch_size]
            padded = pad_histories(chunk, self.timeline, self.decay)
            profiles = decayed_profiles(
                self.bank[torch.from_numpy(padded.rows)],
                torch.from_numpy(padded.log2_weight).float(), torch.from_numpy(padded.valid),
            )
            ranks.extend(_ranks(profiles @ self.bank.T, [c.target for c in chunk]))
        return ranks

    @torch.no_grad()
    def query_ranks(self, queries: Sequence[str], relevant: Sequence[frozenset[int]],
                    batch_size: int = 256) -> list[int]:
        """0-based full-catalogue rank of each query's best-placed relevant item."""
        self.encoder.train(False)
        ranks: list[int] = []
        for start in range(0, len(queries), batch_size):
            scores = self.encoder.encode(queries[start:start + batch_size]) @ self.bank.T
            for row, targets in zip(scores, relevant[start:start + batch_size]):
                best = max(float(row[t]) for t in targets)
                ranks.append(int((row > best).sum()))
        return ranks


def _ranks(scores: torch.Tensor, targets: list[int]) -> list[int]:
    """Rank of each target: how many items score strictly higher (ties favour the target)."""
    target_scores = scores[torch.arange(len(targets)), torch.tensor(targets)]
    return (scores > target_scores[:, None]).sum(dim=1).tolist()


def as_numpy(vectors: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(vectors.detach().numpy(), dtype=np.float32)
