"""The ranking configuration of a running service: fusion constants and the rule book."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aisle.service.ranking.hybrid import FusionParams
from aisle.service.ranking.listing import MatchParams
from aisle.service.ranking.rules import RuleBook, load_rule_book

if TYPE_CHECKING:
    from aisle.service.settings import ServiceSettings


@dataclass(frozen=True)
class RankingConfig:
    """Everything ranking reads from the settings, loaded (and validated) once at start-up."""

    fusion: FusionParams = FusionParams()
    matching: MatchParams = MatchParams()
    rule_book: RuleBook = field(default_factory=RuleBook)

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> RankingConfig:
        """Reads the fusion settings and the rules file.

        Raises:
            RulesError: the rules file is missing or invalid.
        """
        fusion = FusionParams(
            method=settings.fusion_method,
            dense_weight=settings.fusion_dense_weight,
            lexical_weight=settings.fusion_lexical_weight,
            rrf_k=settings.fusion_rrf_k,
            image_weight=settings.fusion_image_weight,
            similar_image_weight=settings.similar_image_weight,
            profile_image_weight=settings.profile_image_weight,
        )
        matching = MatchParams(
            lexical_floor=settings.match_lexical_floor,
            min_similarity=settings.match_min_similarity,
            similarity_margin=settings.match_similarity_margin,
            attribute_boost=settings.match_attribute_boost,
        )
        return cls(fusion=fusion, matching=matching, rule_book=load_rule_book(settings.rules_file))
