"""The catalogue schema: what each field may do in search, inferred by the build and overridable.

Every column is a field with roles:

* ``searchable`` (with a weight): its text is indexed by BM25, repeated ``weight`` times, so that
  a word of a heavier field counts for more (see ``lexical_document``);
* ``filterable``: ``filters`` may constrain it (equals, any of, range, not);
* ``facetable``: ``facets`` may count its values over every match;
* ``sortable``: ``sort`` may order by it;
* ``embedded`` (attributes, never inferred): its value is added to the text the encoder embeds;
  on the fashion catalogue that helped queries made of attribute words and slightly hurt queries
  by product name (``benchmarks/results/attribute_text.json``), so it is the shop's choice;
* ``public``: it is returned to callers (``private`` is its opposite).

The build infers the roles of the catalogue's other columns (attributes): text columns are
searchable; a column with few distinct values is filterable and facetable; a numeric column is
filterable (by range) and sortable. Attributes are private until configured ``public``. The
config file's ``fields:`` mapping overrides a field's roles, the roles it names replacing the
inferred ones (``searchable:3`` sets a weight). Aisle's own fields keep their visibility unless
the mapping names ``public`` or ``private``. The schema is recorded in the version's manifest.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

ROLES = ("searchable", "filterable", "facetable", "sortable", "embedded", "public", "private")
Kind = Literal["text", "number", "bool"]

#: Names of a ranked response's own fields: a catalogue column of that name can never be public.
RESPONSE_FIELDS = frozenset(
    {
        "score",
        "explain",
        "source",
        "highlight",
        "highlights",
        "corrected_query",
        "did_you_mean",
        "suggestions",
        "request_id",
        "index_version",
        "took_ms",
        "results",
        "total",
        "facets",
        "matched",
        "experiment",
        "variant",
    }
)
#: Filter keys with a meaning of their own (the first contract's price bounds).
FILTER_KEYWORDS = frozenset({"price_min", "price_max"})
#: Attributes Aisle derives itself (``aisle.index.pictures``: a picture's colour): public unless
#: configured otherwise, as they hold nothing the shop did not show.
DERIVED_PUBLIC = frozenset({"image_colour"})
#: At most this many distinct values make a column "few-valued" (filterable and facetable)...
MAX_FACET_VALUES = 1000
#: ...provided the values repeat: at most one distinct value per this many rows (tiny catalogues
#: get at least ``MIN_FACET_VALUES``).
ROWS_PER_FACET_VALUE = 2
MIN_FACET_VALUES = 20

_WEIGHTED = re.compile(r"searchable(?::(\d+(?:\.\d+)?))?")


class SchemaError(ValueError):
    """A ``fields:`` entry that cannot be applied (unknown role or field, bad weight)."""


@dataclass(frozen=True)
class FieldSpec:
    """One field's type and roles."""

    name: str
    kind: Kind = "text"
    searchable: bool = False
    weight: float = 1.0
    filterable: bool = False
    facetable: bool = False
    sortable: bool = False
    embedded: bool = False
    public: bool = False
    #: True for Aisle's own fields (id, title, brand, ...), False for attributes.
    builtin: bool = False

    @property
    def indexed(self) -> bool:
        """Whether the field needs a column of values at query time (filter, facet or sort)."""
        return self.filterable or self.facetable or self.sortable

    def roles(self) -> list[str]:
        """The roles as the config file spells them."""
        roles = []
        if self.searchable:
            roles.append("searchable" if self.weight == 1 else f"searchable:{self.weight:g}")
        roles += [role for role in ("filterable", "facetable", "sortable", "embedded") if getattr(self, role)]
        roles.append("public" if self.public else "private")
        return roles


#: Aisle's own fields and their default roles (``title`` and ``description`` are also embedded).
BUILTIN_FIELDS: dict[str, FieldSpec] = {
    spec.name: spec
    for spec in (
        FieldSpec("id", public=True, builtin=True),
        FieldSpec("title", searchable=True, public=True, builtin=True),
        FieldSpec("description", searchable=True, public=True, builtin=True),
        FieldSpec("brand", searchable=True, filterable=True, facetable=True, public=True, builtin=True),
        FieldSpec("category", searchable=True, filterable=True, facetable=True, public=True, builtin=True),
        FieldSpec("price", "number", filterable=True, sortable=True, public=True, builtin=True),
        FieldSpec("in_stock", "bool", filterable=True, facetable=True, public=True, builtin=True),
        FieldSpec("image", public=True, builtin=True),
        FieldSpec("margin", "number", builtin=True),
        FieldSpec("boost", "number", builtin=True),
    )
}
#: Aisle's fields every response needs: they cannot be made private.
ALWAYS_PUBLIC = ("id", "title")


@dataclass(frozen=True)
class Schema:
    """Every field of a catalogue, Aisle's own first, then the attributes in column order."""

    fields: tuple[FieldSpec, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {spec.name: spec for spec in self.fields})

    def get(self, name: str) -> FieldSpec | None:
        return self._by_name.get(name)  # type: ignore[attr-defined]

    def __contains__(self, name: str) -> bool:
        return name in self._by_name  # type: ignore[attr-defined]

    def names(self, role: str) -> list[str]:
        """Fields having ``role`` (``public`` or any other role name)."""
        return [spec.name for spec in self.fields if getattr(spec, role)]

    @property
    def attributes(self) -> list[FieldSpec]:
        return [spec for spec in self.fields if not spec.builtin]

    def public_attributes(self) -> list[str]:
        return [spec.name for spec in self.attributes if spec.public]

    def searchable_attributes(self) -> list[FieldSpec]:
        return [spec for spec in self.attributes if spec.searchable]

    def to_manifest(self) -> dict[str, Any]:
        """The JSON form recorded in a version's manifest."""
        return {
            "fields": [
                {key: value for key, value in asdict(spec).items() if key != "builtin"} | {"builtin": spec.builtin}
                for spec in self.fields
            ]
        }

    @classmethod
    def from_manifest(cls, entry: Mapping[str, Any] | None) -> Schema:
        """The schema of a version; versions built before schemas existed get the built-in fields."""
        if not entry:
            return cls(tuple(BUILTIN_FIELDS.values()))
        return cls(tuple(FieldSpec(**field) for field in entry["fields"]))


def infer_schema(rows: Sequence[Mapping[str, Any]], overrides: Mapping[str, Any] | None = None) -> Schema:
    """The schema of a catalogue's attributes (``rows``: one attribute dict per product).

    Args:
        rows: each product's attributes (column → value; blank values left out).
        overrides: the config file's ``fields:`` mapping, field → list of roles.

    Raises:
        SchemaError: an override names an unknown field or role, a bad weight, makes a field
            called like a response field public, or hides ``id``/``title``.
    """
    columns: dict[str, list[Any]] = {}
    for row in rows:
        for name, value in row.items():
            columns.setdefault(name, []).append(value)
    specs = dict(BUILTIN_FIELDS)
    for name, values in columns.items():
        if name not in BUILTIN_FIELDS:  # the loader keeps Aisle's fields out of the attributes
            specs[name] = _infer_attribute(name, values, len(rows))
    for name, roles in (overrides or {}).items():
        if name not in specs:
            known = ", ".join(sorted(specs))
            raise SchemaError(f"fields: '{name}' is not a column of this catalogue (its fields are: {known})")
        specs[name] = apply_roles(specs[name], roles)
    return Schema(tuple(specs.values()))


def _infer_attribute(name: str, values: list[Any], rows: int) -> FieldSpec:
    kind = value_kind(values)
    distinct = len({_distinct_key(value) for value in values})
    few = distinct <= min(MAX_FACET_VALUES, max(MIN_FACET_VALUES, rows // ROWS_PER_FACET_VALUE))
    if name in DERIVED_PUBLIC:
        return FieldSpec(name, kind, searchable=True, filterable=True, facetable=True, public=True)
    if kind == "number":
        return FieldSpec(name, kind, filterable=True, facetable=few, sortable=True)
    if kind == "bool":
        return FieldSpec(name, kind, filterable=True, facetable=True)
    return FieldSpec(name, kind, searchable=True, filterable=few, facetable=few)


def apply_roles(spec: FieldSpec, roles: Any) -> FieldSpec:
    """``spec`` with the roles of a ``fields:`` entry replacing its own.

    Raises:
        SchemaError: naming the field and the bad role.
    """
    if isinstance(roles, str):
        roles = [roles]
    if not isinstance(roles, (list, tuple)):
        raise SchemaError(f"fields: '{spec.name}' must list roles, e.g. [filterable, facetable, public]")
    flags = {"searchable": False, "filterable": False, "facetable": False, "sortable": False, "embedded": False}
    weight = 1.0
    visibility: bool | None = None
    for role in roles:
        text = str(role).strip()
        weighted = _WEIGHTED.fullmatch(text)
        if weighted:
            flags["searchable"] = True
            weight = float(weighted.group(1) or 1.0)
            if not 0 < weight <= 10:
                raise SchemaError(f"fields: '{spec.name}': a search weight is between 0 and 10, not {weight:g}")
        elif text in ("filterable", "facetable", "sortable", "embedded"):
            flags[text] = True
        elif text in ("public", "private"):
            if visibility is not None and visibility != (text == "public"):
                raise SchemaError(f"fields: '{spec.name}' cannot be both public and private")
            visibility = text == "public"
        else:
            raise SchemaError(
                f"fields: '{spec.name}': unknown role '{text}'; roles are {', '.join(ROLES)} "
                "(searchable:N sets a weight)"
            )
    if spec.builtin and visibility is None:
        visibility = spec.public  # Aisle's own fields keep their visibility unless told
    public = bool(visibility)
    if spec.name in ALWAYS_PUBLIC and not public:
        raise SchemaError(f"fields: '{spec.name}' is in every response and cannot be private")
    if public and spec.name in RESPONSE_FIELDS:
        raise SchemaError(
            f"fields: column '{spec.name}' has the name of a response field and cannot be public; "
            f"rename it in the catalogue (or map it with --map) to return it"
        )
    if flags["embedded"] and spec.builtin:
        raise SchemaError(f"fields: '{spec.name}' is Aisle's own field: only attributes take the role embedded")
    if spec.name == "id" and any(flags.values()):
        raise SchemaError("fields: 'id' takes no roles but public")
    if flags["sortable"] and spec.kind == "text" and spec.name in ("description",):
        raise SchemaError(f"fields: '{spec.name}' cannot be sortable")
    if (flags["filterable"] or flags["facetable"]) and spec.name in FILTER_KEYWORDS:
        raise SchemaError(f"fields: a column named '{spec.name}' cannot be filterable: the name is a filter keyword")
    return replace(
        spec,
        weight=weight,
        public=public,
        searchable=flags["searchable"],
        filterable=flags["filterable"],
        facetable=flags["facetable"],
        sortable=flags["sortable"],
        embedded=flags["embedded"],
    )


def value_kind(values: Iterable[Any]) -> Kind:
    """``number`` when every value is a number (or a numeric string), ``bool`` when every one is a
    boolean, else ``text``."""
    kinds = {_kind_of(value) for value in values}
    if kinds == {"bool"}:
        return "bool"
    if kinds and kinds <= {"number"}:
        return "number"
    return "text"


_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def _kind_of(value: Any) -> Kind:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number" if math.isfinite(value) else "text"
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        return "number"
    return "text"


def as_number(value: Any) -> float | None:
    """A numeric attribute's value as a float (None when it is not a finite number)."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def as_text(value: Any) -> str:
    """An attribute's value as the text it is filtered and counted by."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (list, dict)):
        import json

        return json.dumps(value, sort_keys=True)
    return str(value)


def _distinct_key(value: Any) -> str:
    return as_text(value).casefold()


def lexical_document(values: Mapping[str, Any], searchable: Sequence[FieldSpec]) -> str:
    """The text BM25 indexes for a product: each searchable field's value repeated by its weight
    (rounded, at least once), so that a word of a heavier field counts for more.

    Args:
        values: the product's fields and attributes by name (blank ones may be missing).
        searchable: the schema's searchable fields, in schema order.
    """
    parts: list[str] = []
    for spec in searchable:
        value = values.get(spec.name)
        if value is None or value == "":
            continue
        parts.extend([as_text(value)] * max(1, round(spec.weight)))
    return " . ".join(parts)
