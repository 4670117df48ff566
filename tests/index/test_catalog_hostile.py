"""Careless catalogues (issue 24, finding 5): nothing is swallowed or dropped silently.

A stray quote made Python's lenient CSV reader run one value on over the following rows (six
rows became three products, exit 0), and cells beyond the header were dropped without a word.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from aisle.cli import main as aisle_main
from aisle.index.catalog import CatalogError, load_catalog

HEADER = "id,title,brand,price\n"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "catalog.csv"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "rows",
    [
        # The quote is never closed: everything after it would be one title.
        'p1,Chef knife,Acme,10\np2,"Bread knife,Acme,20\np3,Pan,Acme,30\np4,Pot,Acme,40\np5,Lid,Acme,5\n',
        # It is "closed" by the next quoted value's opening quote, three rows later.
        'p1,Chef knife,Acme,10\np2,"Bread knife,Acme,20\np3,Pan,Acme,30\np4,"Pot, large",Acme,40\np5,Lid,Acme,5\n',
    ],
)
def test_an_unbalanced_quote_fails_naming_the_row_and_the_field(tmp_path: Path, rows: str) -> None:
    with pytest.raises(CatalogError) as failure:
        load_catalog(write(tmp_path, HEADER + rows))
    message = str(failure.value)
    assert "row 2 (line 3)" in message and "field 'title'" in message and "unbalanced quote" in message


def test_quoted_values_with_commas_newlines_and_doubled_quotes_still_load(tmp_path: Path) -> None:
    """A guard, not a finding: the strict reader still reads every legitimate quoting."""
    text = HEADER + 'p1,"Knife, 8"" chef",Acme,10\np2,"Two\nlines",Acme,20\np3,Pl"ain,Acme,30\n'
    catalog = load_catalog(write(tmp_path, text))
    assert [p.title for p in catalog.products] == ['Knife, 8" chef', "Two\nlines", 'Pl"ain']


def test_extra_cells_are_a_bad_row_naming_it(tmp_path: Path) -> None:
    text = HEADER + "p1,Chef knife,Acme,10\np2,Pan,Acme,20,oops,more\np3,Pot,Acme,30,\n"
    with pytest.raises(CatalogError) as failure:
        load_catalog(write(tmp_path, text))
    problems = failure.value.problems
    assert [(p.row, p.line, p.field) for p in problems] == [(2, 3, "(extra cells)")]
    assert "'oops'" in problems[0].message
    # A trailing empty cell (row 3) loses nothing and is accepted; --skip-bad-rows skips row 2.
    catalog = load_catalog(write(tmp_path, text), skip_bad_rows=True)
    assert [p.id for p in catalog.products] == ["p1", "p3"] and catalog.skipped[0].row == 2


def test_aisle_build_exits_2_on_an_unbalanced_quote(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, HEADER + 'p1,Knife,Acme,10\np2,"Pan,Acme,20\np3,Pot,Acme,30\n')
    assert aisle_main(["build", "--catalog", str(path), "--out", str(tmp_path / "index"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "row 2 (line 3), field 'title'" in err and "Traceback" not in err
