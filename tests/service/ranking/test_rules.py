"""The rules file, its per-surface sections and per-request overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from aisle.service.ranking.rules import (
    Pin,
    RuleBook,
    RulesError,
    RulesOverride,
    category_within,
    load_rule_book,
    normalize_query,
)

RULES_YAML = """
in_stock_only: true
caps: [{field: brand, max: 3, within: 10}]
boosts: {margin: 0.2, brands: {acme: 0.05}}
pins:
  - {item_id: SKU-1, position: 1, query: "Gift  Card"}
diversity: {lambda: 0.95}
surfaces:
  similar:
    diversity: {lambda: 0.6}
    caps: []
  recommendations:
    exploration: {share: 0.2}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_layers_apply_in_order(tmp_path: Path) -> None:
    book = load_rule_book(write(tmp_path, RULES_YAML))
    search = book.for_surface("search")
    assert search.caps[0].max == 3 and search.caps[0].within == 10
    assert search.boosts.margin == 0.2 and search.boosts.boost == 0.1  # unset fields keep defaults
    assert search.diversity.lambda_ == 0.95
    similar = book.for_surface("similar")
    assert similar.diversity.lambda_ == 0.6 and similar.caps == ()
    # The file's top level beats the built-in surface default (0.9 for recommendations).
    recommendations = book.for_surface("recommendations")
    assert recommendations.diversity.lambda_ == 0.95 and recommendations.exploration.share == 0.2
    assert recommendations.exploration.pool == 20


def test_builtin_surface_defaults_without_a_file() -> None:
    book = load_rule_book(None)
    assert book.for_surface("search").diversity.lambda_ == 1.0
    assert book.for_surface("similar").diversity.lambda_ < 1.0
    assert book.for_surface("search").in_stock_only is True


def test_request_override_merges_objects_and_replaces_lists(tmp_path: Path) -> None:
    book = load_rule_book(write(tmp_path, RULES_YAML))
    override = RulesOverride.model_validate(
        {
            "boosts": {"boost": 0.5},
            "caps": [{"field": "category", "max": 1}],
            "pins": None,
            "diversity": {"lambda": 0.3},
        }
    )
    rules = book.for_surface("search", override)
    assert rules.boosts.margin == 0.2 and rules.boosts.boost == 0.5 and rules.boosts.brands == {"acme": 0.05}
    assert [cap.field for cap in rules.caps] == ["category"]
    assert len(rules.pins) == 1  # an explicit null changes nothing
    assert rules.diversity.lambda_ == 0.3
    assert book.for_surface("search").diversity.lambda_ == 0.95  # the book itself is unchanged


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("caps: [{field: colour, max: 2}]", "caps.0.field"),
        ("diversity: {lambda: 0}", "diversity.lambda"),
        ("exploration: {share: 0.9}", "exploration.share"),
        ("pins: [{item_id: x, position: 0}]", "pins.0.position"),
        ("surprise: true", "surprise"),
        ("surfaces: {checkout: {}}", "surfaces.checkout"),
    ],
)
def test_invalid_files_name_the_field(tmp_path: Path, text: str, field: str) -> None:
    with pytest.raises(RulesError, match=field.replace(".", r"\.")):
        load_rule_book(write(tmp_path, text))


def test_missing_and_unparsable_files(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="not found"):
        load_rule_book(tmp_path / "absent.yaml")
    with pytest.raises(RulesError, match="YAML"):
        load_rule_book(write(tmp_path, "caps: [unclosed"))
    assert isinstance(load_rule_book(write(tmp_path, "")), RuleBook)


def test_pin_conditions() -> None:
    assert Pin(item_id="x", position=1).applies(None, None)
    query_pin = Pin(item_id="x", position=1, query="Gift  Card")
    assert query_pin.applies(" gift card", None) and not query_pin.applies("gift cards", None)
    assert not query_pin.applies(None, None)
    category_pin = Pin(item_id="x", position=1, category="Home > Kitchen")
    assert category_pin.applies(None, "home>kitchen>Knives")
    assert not category_pin.applies(None, "Home > Kitchenware") and not category_pin.applies(None, None)
    assert normalize_query("  A\tB  ") == "a b"
    assert category_within("Home > Kitchen", "home") and not category_within("Home", "Home > Kitchen")
