"""The catalogue schema: inferred roles, ``fields:`` overrides, the manifest, ``--map`` templates."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from aisle.index.catalog import CatalogError, load_catalog, parse_column_map
from aisle.index.loaded import LoadedIndex
from aisle.index.schema import SchemaError, infer_schema, lexical_document
from tests.index.conftest import build


def rows(count: int = 40) -> list[dict]:
    return [
        {
            "gender": ["Men", "Women", "Unisex"][i % 3],
            "year": str(2010 + i % 5),
            "weight_g": 100.5 + i,
            "sku": f"SKU-{i:04d}",
            "waterproof": i % 2 == 0,
        }
        for i in range(count)
    ]


def roles(schema, name: str) -> list[str]:
    spec = schema.get(name)
    assert spec is not None
    return spec.roles()


def test_roles_are_inferred_from_the_values() -> None:
    schema = infer_schema(rows())
    assert roles(schema, "gender") == ["searchable", "filterable", "facetable", "private"]
    assert roles(schema, "year") == ["filterable", "facetable", "sortable", "private"]  # numeric text, few values
    assert roles(schema, "weight_g") == ["filterable", "sortable", "private"]  # numeric, all distinct
    assert roles(schema, "sku") == ["searchable", "private"]  # text, all distinct: not a facet
    assert roles(schema, "waterproof") == ["filterable", "facetable", "private"]
    # Aisle's own fields: brand and category facets, price range and sort; margin and boost private.
    assert roles(schema, "brand") == ["searchable", "filterable", "facetable", "public"]
    assert roles(schema, "price") == ["filterable", "sortable", "public"]
    assert roles(schema, "margin") == ["private"]


def test_config_roles_replace_the_inferred_ones() -> None:
    schema = infer_schema(
        rows(),
        {
            "gender": ["filterable", "public"],
            "sku": ["searchable:3", "public"],
            "year": ["private"],
            "price": ["sortable"],
        },
    )
    assert roles(schema, "gender") == ["filterable", "public"]
    assert roles(schema, "sku") == ["searchable:3", "public"] and schema.get("sku").weight == 3
    assert roles(schema, "year") == ["private"]  # no longer filterable, facetable or sortable
    assert roles(schema, "price") == ["sortable", "public"]  # Aisle's fields keep their visibility
    assert schema.public_attributes() == ["gender", "sku"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"colour": ["public"]}, "'colour' is not a column"),
        ({"gender": ["facetted"]}, "unknown role 'facetted'"),
        ({"gender": ["searchable:0"]}, "weight"),
        ({"gender": ["public", "private"]}, "both public and private"),
        ({"title": ["private"]}, "cannot be private"),
        ({"gender": "filterable, public"}, "unknown role"),
    ],
)
def test_bad_overrides_name_the_field_and_the_role(overrides: dict, message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        infer_schema(rows(), overrides)


def test_a_column_named_like_a_response_field_cannot_be_public() -> None:
    data = [{"score": 4.5, "source": "feed"}]
    assert not infer_schema(data).get("score").public
    with pytest.raises(SchemaError, match="'score' has the name of a response field"):
        infer_schema(data, {"score": ["public"]})


def test_heavier_fields_repeat_in_the_lexical_document() -> None:
    schema = infer_schema([{"gender": "Men"}], {"gender": ["searchable:2"]})
    searchable = [spec for spec in schema.fields if spec.searchable]
    document = lexical_document({"title": "Running shoes", "gender": "Men", "brand": ""}, searchable)
    assert document == "Running shoes . Men . Men"


def test_the_build_records_the_schema_and_weights_attributes_in_bm25(tmp_path: Path) -> None:
    from aisle.index.catalog import Product

    products = [
        Product("w", "Kalenji running shoe", attributes={"gender": "Women"}),
        Product("m", "Kalenji running shoe", attributes={"gender": "Men"}),
    ] + [Product(f"x{i}", f"sandal {i}", attributes={"gender": "Men"}) for i in range(6)]
    report = build(tmp_path / "index", products, fields={"gender": ["searchable:2", "filterable", "public"]})
    manifest = json.loads((report.path / "manifest.json").read_text())
    gender = next(field for field in manifest["schema"]["fields"] if field["name"] == "gender")
    assert gender["searchable"] and gender["weight"] == 2 and gender["public"] and not gender["facetable"]
    index = LoadedIndex.load(report.path)
    rows_, _ = index.lexical.top("men running shoe", 2)
    assert [index.items.ids[row] for row in rows_][0] == "m"  # the gender word now counts


def write_csv(path: Path) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sku", "name", "masterCategory", "subCategory", "articleType"])
        writer.writerow(["1", "Shirt", "Apparel", "Topwear", "Shirts"])
        writer.writerow(["2", "Belt", "Accessories", "", "Belts"])
    return path


def test_map_templates_combine_columns(tmp_path: Path) -> None:
    mapping = parse_column_map(
        ["id=sku", "title={name} ({articleType})", "category={masterCategory} > {subCategory} > {articleType}"]
    )
    catalog = load_catalog(write_csv(tmp_path / "styles.csv"), mapping)
    first, second = catalog.products
    assert first.title == "Shirt (Shirts)" and first.category == "Apparel > Topwear > Shirts"
    assert second.category == "Accessories > Belts"  # a blank part is left out of the path
    assert first.attributes["articleType"] == "Shirts"  # combined columns stay attributes


def test_map_templates_name_an_unknown_column(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="has no column 'masterCat'"):
        load_catalog(
            write_csv(tmp_path / "styles.csv"), parse_column_map(["id=sku", "title=name", "category={masterCat}"])
        )
    for bad in ("category={}", "category={a", "category=a}"):
        with pytest.raises(CatalogError, match="bad --map template"):
            parse_column_map([bad])


def test_embedded_attributes_join_the_encoded_text_and_its_hash(tmp_path: Path) -> None:
    from aisle.index.catalog import Product
    from tests.fakes import HashingEncoder
    from tests.index.conftest import CountingEncoder

    products = [Product("a", "Trail shoe", brand="Acme", attributes={"gender": "Men", "colour": "Red"})]
    assert products[0].embedding_text(["gender", "colour"]) == "Trail shoe. Acme. Men, Red"
    assert products[0].content_hash(["gender"]) != products[0].content_hash() == products[0].content_hash([])
    encoder = CountingEncoder(HashingEncoder(32))
    build(tmp_path / "index", products, encoder)
    assert encoder.encoded_texts == ["Trail shoe. Acme"]
    build(tmp_path / "index", products, encoder, fields={"gender": ["embedded", "searchable"]})
    assert encoder.encoded_texts[1:] == ["Trail shoe. Acme. Men"]  # the changed text is encoded again
    with pytest.raises(SchemaError, match="only attributes take the role embedded"):
        infer_schema([], {"brand": ["embedded"]})
