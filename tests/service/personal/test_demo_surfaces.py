"""Every recommendation surface on the demo catalogue, as a storefront uses it (real encoder).

The demo catalogue (``demo/catalog.csv``) is indexed with the serving encoder (ONNX int8
MiniLM), so that "a variant of what was just bought" means what a shopper would see: the
Brevano Aria EM-300 in stainless steel and in cream (KIT-0003, KIT-0004) are one machine in two
colours; the tamper (KIT-0012), the milk pitcher (KIT-0011) and the espresso beans (KIT-0015) are
what is bought with it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from aisle.index.build import BuildOptions, build_version
from aisle.index.catalog import load_catalog
from aisle.service.app import create_app
from tests.service.harness import settings_for

REPO = Path(__file__).resolve().parents[3]
DEMO_CATALOG = REPO / "demo" / "catalog.csv"
DAY_S = 86_400.0
MACHINE, TWIN, TAMPER, PITCHER, BEANS = "KIT-0003", "KIT-0004", "KIT-0012", "KIT-0011", "KIT-0015"


@pytest.fixture(scope="module")
def encoder():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from aisle.embed import create_encoder, prepare_model
    except ImportError as exc:
        pytest.skip(f"the demo surfaces need the real encoder (aisle.embed.create_encoder): {exc}")
    from aisle.service.settings import ServiceSettings

    config = ServiceSettings().encoder_config()
    prepare_model(config)
    return create_encoder(config)


@pytest.fixture(scope="module")
def demo_index(tmp_path_factory: pytest.TempPathFactory, encoder) -> Path:
    root = tmp_path_factory.mktemp("demo") / "index"
    build_version(load_catalog(DEMO_CATALOG), root, encoder, BuildOptions(show_progress=False))
    return root


@pytest.fixture
def client(tmp_path: Path, demo_index: Path, encoder) -> Iterator[TestClient]:
    settings = settings_for(tmp_path, index_dir=demo_index)
    with TestClient(create_app(settings, encoder_factory=lambda _settings: encoder)) as client:
        yield client


def event(user: str, item: str, kind: str = "purchase", days_ago: float = 0.0) -> dict:
    return {
        "event_id": f"{user}-{item}-{kind}-{days_ago}",
        "user_id": user,
        "item_id": item,
        "type": kind,
        "timestamp": time.time() - days_ago * DAY_S,
    }


def send(client: TestClient, events: list[dict]) -> None:
    response = client.post("/events", json={"events": events})
    assert response.status_code == 200, response.text


def ids(client: TestClient, path: str, **params) -> list[str]:
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    return [result["id"] for result in response.json()["results"]]


def crowd_buys_machine_then_accessories(client: TestClient) -> None:
    """Twelve customers buy the machine, and weeks later the tamper, the pitcher or the beans."""
    events = []
    for n in range(12):
        events.append(event(f"crowd{n}", MACHINE, days_ago=90))
        events.append(event(f"crowd{n}", (TAMPER, PITCHER, BEANS)[n % 3], days_ago=60))
    send(client, events)


def test_after_a_purchase_complements_come_forward_and_the_variant_waits(client: TestClient) -> None:
    crowd_buys_machine_then_accessories(client)
    send(client, [event("newcomer", MACHINE)])
    top = ids(client, "/users/newcomer/recommendations", k=10)
    assert len(top) == 10
    assert MACHINE not in top and TWIN not in top
    assert top[0] in {TAMPER, PITCHER, BEANS}
    assert {TAMPER, PITCHER, BEANS} <= set(top[:5])


def test_a_customer_who_buys_variants_gets_the_variant_back(client: TestClient) -> None:
    """The gooseneck kettle in matte black and in copper (KIT-0006, KIT-0007): this customer buys
    colours, so the machine's twin is no substitute for them."""
    send(client, [event("collector", "KIT-0006", days_ago=60), event("collector", "KIT-0007", days_ago=30)])
    send(client, [event("collector", MACHINE)])
    top = ids(client, "/users/collector/recommendations", k=10)
    assert TWIN in top and MACHINE not in top


def test_the_product_page_blends_similar_and_bought_together(client: TestClient) -> None:
    crowd_buys_machine_then_accessories(client)
    similar = ids(client, f"/items/{MACHINE}/similar", k=10)
    assert TWIN in similar  # similar items still show the variant on the product page
    assert {TAMPER, PITCHER, BEANS} & set(similar)
    # Recommendations with the product being viewed as context put its complements first.
    viewing = ids(client, "/users/visitor/recommendations", k=5, item_id=MACHINE)
    assert MACHINE not in viewing
    assert viewing[0] in {TAMPER, PITCHER, BEANS}


def test_cart_items_are_never_recommended(client: TestClient) -> None:
    crowd_buys_machine_then_accessories(client)
    send(client, [event("shopper", TAMPER, kind="add_to_cart")])
    assert TAMPER not in ids(client, "/users/shopper/recommendations", k=20)
    # The storefront's own cart, sent with the request, counts too (and seeds bought-together).
    with_cart = ids(client, "/users/shopper/recommendations", k=20, cart=[PITCHER, MACHINE])
    assert not {TAMPER, PITCHER, MACHINE} & set(with_cart)
    # Once bought, the cart is empty again; the purchase keeps it out all the same.
    send(client, [event("shopper", TAMPER)])
    assert TAMPER not in ids(client, "/users/shopper/recommendations", k=20)


def test_always_k_results_backfilled(client: TestClient) -> None:
    send(client, [event(f"few{n}", item) for n, item in enumerate(("KIT-0001", "KIT-0002", "KIT-0005"))])
    for user in ("few0", "stranger"):
        for k in (10, 50):
            found = ids(client, f"/users/{user}/recommendations", k=k)
            assert len(found) == k and len(set(found)) == k
    # A narrow filter still fills k when it allows k items, and never more than it allows.
    books = ids(client, "/users/few0/recommendations", k=5, filters=json.dumps({"category": "Books"}))
    assert len(books) == 5


def test_filters_on_every_surface(client: TestClient) -> None:
    crowd_buys_machine_then_accessories(client)
    send(client, [event("filtered", MACHINE, kind="view")])
    items = {}
    with DEMO_CATALOG.open(encoding="utf-8") as handle:
        import csv

        for row in csv.DictReader(handle):
            items[row["id"]] = row
    cheap = json.dumps({"price_max": 40})
    coffee = json.dumps({"category": "Home > Kitchen > Coffee", "brand": ["Brevano"]})
    surfaces = [
        ("/users/filtered/recommendations", {}),
        (f"/items/{MACHINE}/similar", {}),
        ("/users/filtered/recommendations", {"item_id": MACHINE}),
    ]
    for path, extra in surfaces:
        for found in (ids(client, path, k=10, filters=cheap, **extra),):
            assert found and all(float(items[i]["price"]) <= 40 for i in found), (path, found)
        found = ids(client, path, k=10, filters=coffee, **extra)
        assert found and all(items[i]["brand"] == "Brevano" for i in found), (path, found)
        assert all(items[i]["category"].startswith("Home > Kitchen > Coffee") for i in found)
    searched = client.post("/search", json={"query": "coffee", "k": 10, "filters": {"price_max": 40}}).json()
    assert all(float(items[r["id"]]["price"]) <= 40 for r in searched["results"])


@pytest.mark.parametrize(
    "bad", ['{"price_min": 50, "price_max": 10}', '{"colour": "red"}', "not json", '{"price_max": -1}']
)
def test_bad_filters_are_a_clear_422(client: TestClient, bad: str) -> None:
    for path in ("/users/u/recommendations", f"/items/{MACHINE}/similar"):
        response = client.get(path, params={"filters": bad})
        assert response.status_code == 422, response.text
        assert response.json()["error"]["message"].startswith("filters")


def test_recently_viewed_latest_first(client: TestClient) -> None:
    send(
        client,
        [
            event("browser", "KIT-0001", "view", days_ago=0.3),
            event("browser", "KIT-0017", "view", days_ago=0.2),
            event("browser", "KIT-0001", "click", days_ago=0.1),
            event("browser", MACHINE, "purchase", days_ago=0.05),
        ],
    )
    assert ids(client, "/users/browser/recently-viewed", k=5) == ["KIT-0001", "KIT-0017"]
    assert ids(client, "/users/nobody/recently-viewed") == []


def test_consumables_come_back_at_the_shops_repurchase_interval(client: TestClient) -> None:
    # Beans are bought again about every 30 days by the crowd; the machine never is.
    regulars = [event(f"regular{n}", BEANS, days_ago=30 * step + n) for n in range(6) for step in range(4)]
    send(client, sorted(regulars, key=lambda e: e["timestamp"]))
    send(client, [event("due", BEANS, days_ago=40), event("due", MACHINE, days_ago=40)])
    send(client, [event("recent", BEANS, days_ago=5)])
    due = client.get("/users/due/recommendations", params={"k": 20}).json()["results"]
    assert BEANS in [r["id"] for r in due] and MACHINE not in [r["id"] for r in due]
    assert next(r for r in due if r["id"] == BEANS)["source"] == "repurchase"
    assert BEANS not in ids(client, "/users/recent/recommendations", k=20)


def write_config(tmp_path: Path, rules: Path) -> Path:
    config = tmp_path / "aisle.yaml"
    config.write_text(f"rules_file: {rules}\nwatch_interval_s: 0\n", encoding="utf-8")
    return config


def test_batch_export_streams_what_the_api_answers(
    tmp_path: Path, demo_index: Path, encoder, capsys: pytest.CaptureFixture[str]
) -> None:
    from aisle.cli import main

    # Exploration draws from each request's own seed: off, so that both sides are comparable.
    rules = tmp_path / "rules.yaml"
    rules.write_text("surfaces:\n  recommendations:\n    exploration: {share: 0}\n", encoding="utf-8")
    settings = settings_for(tmp_path, index_dir=demo_index, rules_file=rules)
    with TestClient(create_app(settings, encoder_factory=lambda _settings: encoder)) as client:
        crowd_buys_machine_then_accessories(client)
        send(client, [event("newcomer", MACHINE)])
        users = ("newcomer", "crowd1", "nobody")
        expected = {user: ids(client, f"/users/{user}/recommendations", k=7) for user in users}
    users = tmp_path / "users.txt"
    users.write_text("newcomer\n\ncrowd1\nnobody\n", encoding="utf-8")
    out = tmp_path / "campaign" / "recs.jsonl"
    common = ["--index", str(demo_index), "--data-dir", str(tmp_path / "data"), "--no-progress"]
    common += ["--config", str(write_config(tmp_path, rules))]
    assert main(["recommend", "--users", str(users), "--out", str(out), "-k", "7", *common]) == 0
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [line["user_id"] for line in lines] == ["newcomer", "crowd1", "nobody"]
    for line in lines:
        assert [r["id"] for r in line["results"]] == expected[line["user_id"]]
        assert all("source" in r and "title" in r for r in line["results"])
    # Filters as on the API; a bad one is a one-line error naming the option.
    cheap = ["--filters", json.dumps({"price_max": 40})]
    assert main(["recommend", "--users", str(users), "--out", str(out), *cheap, *common]) == 0
    assert all(r["price"] <= 40 for line in out.read_text().splitlines() for r in json.loads(line)["results"])
    capsys.readouterr()
    assert main(["recommend", "--users", str(users), "--filters", '{"colour": 1}', *common]) == 2
    assert "--filters: colour" in capsys.readouterr().err
    assert main(["recommend", "--users", str(tmp_path / "missing.txt"), *common]) == 2


def test_signed_in_search_leans_towards_what_is_bought_with_the_users_items(client: TestClient) -> None:
    crowd_buys_machine_then_accessories(client)
    send(client, [event("owner", MACHINE)])

    def ranks(user: str | None) -> dict[str, int]:
        body: dict = {"query": "coffee accessories", "k": 50}
        if user:
            body["user_id"] = user
        response = client.post("/search", json=body)
        assert response.status_code == 200, response.text
        return {r["id"]: rank for rank, r in enumerate(response.json()["results"])}

    anonymous, signed_in = ranks(None), ranks("owner")
    complements = [item for item in (TAMPER, PITCHER, BEANS) if item in anonymous]
    assert complements
    assert all(signed_in[item] <= anonymous[item] for item in complements)
    assert any(signed_in[item] < anonymous[item] for item in complements)
