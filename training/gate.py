"""The quality gate of a rebuild: a new version goes live only if it is not worse on an eval set.

``gated_build`` builds the candidate version with ``aisle.index.build.build_version`` into a scratch
index root beside the real one (so nothing a service watches changes), evaluates the candidate
and the current version on the same eval set — each queried with its own model — and compares:

* the metric change (``candidate − current``; search: MRR@10 of dense retrieval, next-item:
  NDCG@10 of the profile ranking); a drop larger than ``margin`` refuses the candidate;
* overlap@k, the mean share of each query's top k that both versions return, which says how much
  the results move even when the metric does not.

A passing candidate is moved into the real root (a rename within one file system) and published
with ``VersionStore.publish`` under the root's build lock, exactly as ``aisle build`` publishes.
A refused one is deleted and the current version keeps serving.
"""

from __future__ import annotations

import secrets
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aisle.embed.base import Encoder, ImageEncoder
from aisle.index.build import BuildOptions, build_version
from aisle.index.catalog import Catalog
from aisle.index.loaded import LoadedIndex
from aisle.index.profile import DecayConfig
from aisle.index.versions import STAGING_PREFIX, VersionStore
from aisle.training.datasets import SearchSet, SequenceSet
from aisle.training.eval_recsys import ProfileRanker
from aisle.training.eval_search import rank_in_process
from aisle.training.metrics import summarize_ranks, target_rank
from aisle.training.search_metrics import search_summary
from aisle.training.timeline import Timeline

K = 10


class GateRefused(RuntimeError):
    """The candidate is worse than the current version by more than the margin."""

    def __init__(self, report: GateReport) -> None:
        self.report = report
        super().__init__(report.reason)


@dataclass
class GateReport:
    """The comparison of a candidate with the current version."""

    metric: str
    current: float
    candidate: float
    delta: float
    margin: float
    overlap_at_k: float
    k: int
    passed: bool
    reason: str
    current_version: str | None = None
    candidate_version: str | None = None
    published: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EvalSet:
    """What the gate measures: labelled queries (search) or next-item cases (recsys)."""

    search: SearchSet | None = None
    sequences: SequenceSet | None = None
    decay: DecayConfig = field(default_factory=DecayConfig)
    timeline: Timeline = field(default_factory=Timeline)

    def __post_init__(self) -> None:
        if (self.search is None) == (self.sequences is None):
            raise ValueError("a gate eval set is either search queries or next-item cases")

    @property
    def metric(self) -> str:
        return "MRR@10" if self.search is not None else "NDCG@10"

    def run(self, index: LoadedIndex, encoder: Encoder) -> tuple[float, dict[str, list[str]]]:
        """``(metric value, rankings by case)`` of one version."""
        if self.search is not None:
            queries = self.search.queries
            rankings = rank_in_process(index, encoder, queries, "dense", K)
            summary = search_summary([rankings[q.id] for q in queries], [q.gains for q in queries], K)
            return float(summary[self.metric]), rankings
        assert self.sequences is not None
        ranker = ProfileRanker(index, self.decay, self.timeline)
        rankings = {
            f"{n}:{case.user}": ranker.rank(case, K, mask_seen=False) for n, case in enumerate(self.sequences.cases)
        }
        ranks = [target_rank(rankings[f"{n}:{case.user}"], case.target) for n, case in enumerate(self.sequences.cases)]
        return float(summarize_ranks(ranks, (K,))[self.metric]), rankings


def overlap_at_k(first: dict[str, list[str]], second: dict[str, list[str]], k: int = K) -> float:
    """Mean over cases of |top k of first ∩ top k of second| / k."""
    keys = sorted(set(first) & set(second))
    if not keys:
        return 0.0
    return sum(len(set(first[key][:k]) & set(second[key][:k])) / k for key in keys) / len(keys)


def compare_versions(
    current: tuple[LoadedIndex, Encoder],
    candidate: tuple[LoadedIndex, Encoder],
    eval_set: EvalSet,
    margin: float,
) -> GateReport:
    """Evaluates both versions and decides (see the module docstring)."""
    if margin < 0:
        raise ValueError(f"the gate margin must be >= 0, not {margin}")
    current_value, current_rankings = eval_set.run(*current)
    candidate_value, candidate_rankings = eval_set.run(*candidate)
    delta = candidate_value - current_value
    passed = delta >= -margin
    verdict = "passes" if passed else "is refused"
    reason = (
        f"candidate {eval_set.metric} {candidate_value:.4f} vs current {current_value:.4f} "
        f"(change {delta:+.4f}, margin {margin:.4f}): the candidate {verdict}"
    )
    return GateReport(
        metric=eval_set.metric,
        current=round(current_value, 4),
        candidate=round(candidate_value, 4),
        delta=round(delta, 4),
        margin=margin,
        overlap_at_k=round(overlap_at_k(current_rankings, candidate_rankings), 4),
        k=K,
        passed=passed,
        reason=reason,
        current_version=current[0].version,
        candidate_version=candidate[0].version,
    )


def gated_build(
    catalog: Catalog,
    root: Path,
    encoder: Encoder,
    current_encoder: Encoder | None,
    eval_set: EvalSet,
    *,
    margin: float = 0.02,
    options: BuildOptions | None = None,
    image_encoder: ImageEncoder | None = None,
) -> GateReport:
    """Builds a candidate version and publishes it only if it passes the gate.

    Args:
        catalog: the catalogue to build.
        root: the real index root.
        encoder: the candidate's encoder.
        current_encoder: the encoder of the current version (None: same as ``encoder``).
        eval_set: what to compare on.
        margin: the largest metric drop tolerated.
        options: build options of the candidate (default ``BuildOptions()``).
        image_encoder: the shop's image model, so that the candidate keeps its image space.

    Raises:
        GateRefused: the candidate is worse by more than ``margin`` (nothing is published).
    """
    root = Path(root)
    options = options or BuildOptions()
    store = VersionStore(root)
    if store.current_name() is None:
        first = build_version(catalog, root, encoder, options, image_encoder)
        return GateReport(
            eval_set.metric,
            0.0,
            0.0,
            0.0,
            margin,
            0.0,
            K,
            True,
            "no current version to compare with: published without a gate",
            None,
            first.version,
            True,
        )
    current_encoder = current_encoder or encoder
    current_index = LoadedIndex.load(store.current_path())
    if current_index.text.fingerprint != current_encoder.fingerprint:
        raise ValueError(
            f"the current version {current_index.version} was built with model "
            f"{current_index.text.fingerprint}, not {current_encoder.fingerprint}: name the model it was "
            "built with (--current-model) so that its queries are encoded the same way"
        )
    scratch = root / f".gate-{secrets.token_hex(4)}"
    try:
        built = build_version(catalog, scratch, encoder, options, image_encoder)
        candidate_index = LoadedIndex.load(built.path, expected_fingerprint=encoder.fingerprint)
        report = compare_versions((current_index, current_encoder), (candidate_index, encoder), eval_set, margin)
        if not report.passed:
            raise GateRefused(report)
        with store.build_lock():
            staging = root / f"{STAGING_PREFIX}{built.version}"
            built.path.rename(staging)
            store.publish(built.version, staging)
            store.prune(options.keep_versions)
        report.published = True
        return report
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
