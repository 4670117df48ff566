"""One optimisation step of the encoder, for next-item histories and for labelled queries.

Next item: the query side is the served profile of the history (``aisle.training.torch_profile``: the
recency-decayed, type-weighted average of the history items' vectors) over its ``fresh_history``
most recent items (older ones weigh little after decay), scored against in-batch candidates:
the batch's next items, the histories' items and a few random items. Every vector in a score is
encoded afresh, with gradients: when fresh vectors faced stale ones from the bank, the model
gained by moving all fresh vectors together, which the next refresh undid; the loss on the very
cases trained on rose and Amazon Scientific's valid split fell; with every vector fresh it rises
(``benchmarks/results/train_scientific.json``). The user's own history items are left out of
each softmax: the profile is made of them, so no model can rank the next item above them, and
their gradient would only push the user's own items apart.

Search: the query is encoded afresh and scored against freshly encoded candidates only: the
labelled products, *hard negatives* — the products scoring highest for the query right now,
found with the bank — and a few products drawn uniformly from the catalogue.

The bank (every item's vector, recomputed every ``refresh_every`` steps and at each validation)
mines those hard negatives and ranks the validation cases; it never enters a loss.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch

from aisle.index.profile import DecayConfig
from aisle.training.partial_encoder import ItemStates, PartialEncoder
from aisle.training.timeline import Timeline, pad_histories
from aisle.training.torch_profile import decayed_profiles
from aisle.training.train_data import NextItemCase, QueryPair


class CatalogTrainer:
    """Holds the encoder, the item states and the vector bank, and computes losses.

    Args:
        encoder: the split model.
        item_texts: catalogue texts, by row.
        decay: the served decay settings the profile is computed with.
        timeline: how untimed histories become events.
        temperature: softmax temperature of the cosine scores.
        fresh_history: how many of a history's most recent items make the training profile
            (at least 1); they are encoded afresh, with gradients.
        hard_negatives: search: per query, how many of the products scoring highest for it
            (by the bank) are added as candidates. Not used for next items: mined ones lowered the
            trained cases' own HR@50 where in-batch candidates alone raised it.
        random_negatives: search: products drawn uniformly from the catalogue per step.
        seed: seeds the random negatives.
        cache_items: keep the frozen layers' output of every item in memory (else recompute).
    """

    def __init__(
        self,
        encoder: PartialEncoder,
        item_texts: Sequence[str],
        decay: DecayConfig,
        timeline: Timeline,
        temperature: float,
        *,
        fresh_history: int = 4,
        hard_negatives: int = 1,
        random_negatives: int = 64,
        seed: int = 13,
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
        self.fresh_history = max(0, fresh_history)
        self.hard_negatives = max(0, hard_negatives)
        self.random_negatives = max(0, random_negatives)
        self.rng = random.Random(seed)
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
            chosen = [rows[i] for i in order[start : start + chunk]]
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

    def _negatives(self, anchors: torch.Tensor, exclude: Sequence[set[int]]) -> set[int]:
        """Hard negatives (top bank scores per anchor, ``exclude``d rows skipped) and random ones."""
        rows: set[int] = set()
        if self.hard_negatives:
            depth = min(len(self.item_texts), self.hard_negatives + max(len(e) for e in exclude) + 1)
            top = torch.topk(anchors @ self.bank.T, depth, dim=1).indices.tolist()
            for ranked, skip in zip(top, exclude):
                rows.update([r for r in ranked if r not in skip][: self.hard_negatives])
        rows.update(self._random_rows())
        return rows

    def _random_rows(self) -> list[int]:
        """``random_negatives`` distinct catalogue rows drawn uniformly."""
        return self.rng.sample(range(len(self.item_texts)), min(self.random_negatives, len(self.item_texts)))

    def _fresh(self, rows: set[int]) -> tuple[list[int], torch.Tensor, dict[int, int]]:
        ordered = sorted(rows)
        return ordered, self._item_vectors(ordered), {row: i for i, row in enumerate(ordered)}

    def sequence_loss(self, cases: Sequence[NextItemCase]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Cross-entropy of each next item among the batch's items; also returns what to write back.

        Candidates, all encoded afresh with gradients: every next item of the batch (each case's
        target is the others' negative), the histories' recent items and ``random_negatives``
        items drawn from the catalogue, minus the case's own history items. With every item a
        candidate this is the served ranking over the catalogue, the user's items masked.
        """
        padded = pad_histories(cases, self.timeline, self.decay)
        recent = slice(max(0, padded.rows.shape[1] - max(1, self.fresh_history)), None)
        rows, valid = padded.rows[:, recent], padded.valid[:, recent]
        log2_weight = torch.from_numpy(padded.log2_weight[:, recent]).float()
        targets = [c.target for c in cases]
        own = [set(r[v].tolist()) for r, v in zip(padded.rows, padded.valid)]
        candidates = set(rows[valid].tolist()) | set(targets) | set(self._random_rows())
        ordered, fresh, position = self._fresh(candidates)
        local = torch.tensor(
            [[position[r] if ok else 0 for r, ok in zip(rs, vs)] for rs, vs in zip(rows, valid)], dtype=torch.long
        )
        profiles = decayed_profiles(fresh[local], log2_weight, torch.from_numpy(valid))
        logits = profiles @ fresh.T / self.temperature
        # Own history items are out of the softmax (see the module docstring).
        mask = torch.zeros_like(logits, dtype=torch.bool)
        for i, (rows_of_user, target) in enumerate(zip(own, targets)):
            mask[i, [position[r] for r in rows_of_user - {target} if r in position]] = True
        logits = logits.masked_fill(mask, float("-inf"))
        labels = torch.tensor([position[t] for t in targets], dtype=torch.long)
        return torch.nn.functional.cross_entropy(logits, labels), fresh, torch.tensor(ordered, dtype=torch.long)

    def query_loss(
        self, pairs: Sequence[QueryPair], positives: dict[str, frozenset[int]]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Cross-entropy of each labelled product among the candidates for its query.

        A query's other relevant products are never its negatives.
        """
        queries = self.encoder.encode([p.query for p in pairs])
        relevant = [set(positives.get(p.query_id, ())) | {p.target} for p in pairs]
        candidates = {p.target for p in pairs} | self._negatives(queries.detach(), relevant)
        ordered, fresh, position = self._fresh(candidates)
        logits = queries @ fresh.T / self.temperature
        for i, (pair, rows) in enumerate(zip(pairs, relevant)):
            others = [position[r] for r in rows if r != pair.target and r in position]
            if others:
                logits[i, others] = float("-inf")
        labels = torch.tensor([position[p.target] for p in pairs], dtype=torch.long)
        return torch.nn.functional.cross_entropy(logits, labels), fresh, torch.tensor(ordered, dtype=torch.long)

    def write_back(self, fresh: torch.Tensor, index: torch.Tensor) -> None:
        self.bank.index_copy_(0, index, fresh.detach())

    @torch.no_grad()
    def sequence_ranks(self, cases: Sequence[NextItemCase], batch_size: int = 512) -> list[int]:
        """0-based full-catalogue rank of each case's target under the current bank."""
        ranks: list[int] = []
        for start in range(0, len(cases), batch_size):
            chunk = cases[start : start + batch_size]
            padded = pad_histories(chunk, self.timeline, self.decay)
            profiles = decayed_profiles(
                self.bank[torch.from_numpy(padded.rows)],
                torch.from_numpy(padded.log2_weight).float(),
                torch.from_numpy(padded.valid),
            )
            ranks.extend(_ranks(profiles @ self.bank.T, [c.target for c in chunk]))
        return ranks

    @torch.no_grad()
    def query_ranks(
        self, queries: Sequence[str], relevant: Sequence[frozenset[int]], batch_size: int = 256
    ) -> list[int]:
        """0-based full-catalogue rank of each query's best-placed relevant item."""
        self.encoder.train(False)
        ranks: list[int] = []
        for start in range(0, len(queries), batch_size):
            scores = self.encoder.encode(queries[start : start + batch_size]) @ self.bank.T
            for row, targets in zip(scores, relevant[start : start + batch_size]):
                best = max(float(row[t]) for t in targets)
                ranks.append(int((row > best).sum()))
        return ranks


def _ranks(scores: torch.Tensor, targets: list[int]) -> list[int]:
    """Rank of each target: how many items score strictly higher (ties favour the target)."""
    target_scores = scores[torch.arange(len(targets)), torch.tensor(targets)]
    return (scores > target_scores[:, None]).sum(dim=1).tolist()
