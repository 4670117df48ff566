"""Experiments through the HTTP API: assignment, variants, attribution, reports, segments, restarts."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from aisle.cli import main
from aisle.service.experiments.assign import choose_variant
from aisle.service.experiments.config import ExperimentConfig
from aisle.service.settings import ServiceSettings
from tests.service.harness import make_app

KEY = "exp-key"
HEADERS = {"X-API-Key": KEY}
HOME_RECS: dict[str, Any] = {
    "name": "home-recs",
    "surfaces": ["recommendations", "search", "similar"],
    "variants": [{"name": "control", "share": 0.5, "control": True}, {"name": "personal", "share": 0.5}],
}


def app_for(tmp_path: Path, experiments: list[dict] | None = None, **overrides: Any):
    return make_app(tmp_path, experiments=[HOME_RECS] if experiments is None else experiments, api_key=KEY, **overrides)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(app_for(tmp_path)) as client:
        yield client


def users_in(client: TestClient, variant: str, count: int, prefix: str = "user") -> list[str]:
    config = client.app.state.experiments.config("home-recs")
    hasher = client.app.state.personal.hasher
    found = [f"{prefix}{n}" for n in range(500) if choose_variant(config, hasher.user(f"{prefix}{n}")).name == variant]
    return found[:count]


def post_events(client: TestClient, *events: dict) -> dict:
    response = client.post("/events", json={"events": list(events)}, headers=HEADERS)
    assert response.status_code == 200, response.text
    return response.json()


def attributions(tmp_path: Path) -> dict[str, dict]:
    with sqlite3.connect(tmp_path / "data" / "events.sqlite3") as conn:
        conn.row_factory = sqlite3.Row
        return {row["type"] + ":" + row["item_id"]: dict(row) for row in conn.execute("SELECT * FROM attributions")}


def test_every_covered_ranked_response_names_its_sticky_variant(client: TestClient) -> None:
    seen: dict[str, set[str]] = {}
    for n in range(40):
        user = f"shopper{n}"
        for response in (
            client.post("/search", json={"query": "knife", "user_id": user}),
            client.get("/search", params={"q": "pan", "user_id": user}),
            client.get("/items/a-0/similar", params={"user_id": user}),
            client.get(f"/users/{user}/recommendations"),
        ):
            body = response.json()
            assert body["experiment"] == "home-recs"
            seen.setdefault(user, set()).add(body["variant"])
    assert all(len(variants) == 1 for variants in seen.values())  # sticky across surfaces and requests
    assert {next(iter(v)) for v in seen.values()} == {"control", "personal"}
    # Anonymous requests (no id to randomise by) are not enrolled.
    assert "variant" not in client.post("/search", json={"query": "knife"}).json()


def test_assignment_follows_the_shares_and_the_salt() -> None:
    config = ExperimentConfig.model_validate(
        {**HOME_RECS, "variants": [{"name": "control", "share": 0.2, "control": True}, {"name": "b", "share": 0.8}]}
    )
    picks = [choose_variant(config, f"unit{n}").name for n in range(5000)]
    assert 0.18 < picks.count("control") / 5000 < 0.22
    salted = config.model_copy(update={"salt": "round-2"})
    moved = sum(choose_variant(salted, f"unit{n}").name != pick for n, pick in enumerate(picks))
    assert moved > 1000  # a new salt reshuffles


def test_control_serves_without_personalization(client: TestClient) -> None:
    control, personal = users_in(client, "control", 1), users_in(client, "personal", 1)
    for user in control + personal:
        post_events(
            client,
            *[
                {"event_id": f"{user}-{n}", "user_id": user, "item_id": f"a-{item}", "type": "purchase"}
                for n, item in enumerate((9, 10, 11))
            ],
        )
    post_events(client, {"event_id": "pop", "user_id": "someone", "item_id": "a-20", "type": "purchase"})
    popular = [
        r["id"] for r in client.get(f"/users/{users_in(client, 'control', 2)[1]}/recommendations").json()["results"]
    ]
    control_list = client.get(f"/users/{control[0]}/recommendations").json()
    personal_list = client.get(f"/users/{personal[0]}/recommendations").json()
    assert control_list["variant"] == "control" and personal_list["variant"] == "personal"
    # The control's list is the popular list, minus its own recent purchases (a business rule),
    # backfilled to k items from the catalogue.
    own = {"a-9", "a-10", "a-11"}
    control_ids = [r["id"] for r in control_list["results"]]
    assert [i for i in popular if i not in own][0] == control_ids[0] == "a-20"
    assert len(control_ids) == 10 and not own & set(control_ids)
    assert {r["source"] for r in control_list["results"]} <= {"popular", "catalogue"}
    assert "profile" in {r["source"] for r in personal_list["results"]}


def test_events_accept_attribution_fields_and_refuse_bad_ones(client: TestClient) -> None:
    base = {"event_id": "x", "user_id": "u", "item_id": "a-1"}
    for bad in (
        {"type": "click", "revenue": 3.0},
        {"type": "purchase", "revenue": -1},
        {"type": "purchase", "revenue": "Infinity"},
        {"type": "click", "position": 0},
        {"type": "click", "request_id": ""},
    ):
        response = client.post("/events", json={"events": [{**base, **bad}]}, headers=HEADERS)
        assert response.status_code == 422, bad
        assert response.json()["error"]["code"]
    assert (
        post_events(client, {**base, "type": "purchase", "revenue": 19.99, "request_id": "r1", "position": 2})[
            "accepted"
        ]
        == 1
    )


def test_clicks_and_purchases_are_attributed_to_the_response(client: TestClient, tmp_path: Path) -> None:
    user = users_in(client, "personal", 1)[0]
    body = client.post(
        "/search",
        json={"query": "  Chef  KNIFE ", "user_id": user, "context": {"channel": "Email", "device": "mobile"}},
    ).json()
    third = body["results"][2]["id"]
    post_events(
        client,
        {"event_id": "c1", "user_id": user, "item_id": third, "type": "click", "request_id": body["request_id"]},
        # Same batch: a checkout names no response; the window finds the click.
        {"event_id": "p1", "user_id": user, "item_id": third, "type": "purchase", "revenue": 49.0},
    )
    rows = attributions(tmp_path)
    click, purchase = rows[f"click:{third}"], rows[f"purchase:{third}"]
    assert click["via"] == "request" and click["position"] == 3  # derived from the response
    assert (click["surface"], click["query"], click["variant"]) == ("search", "chef knife", "personal")
    assert json.loads(click["segment"]) == {"channel": "email", "device": "mobile", "region": None, "visitor": "new"}
    assert purchase["via"] == "window" and purchase["request_id"] == body["request_id"]
    assert purchase["revenue"] == 49.0 and purchase["position"] == 3
    # A later batch: a purchase of another item from the same response is attributed through the database.
    other = body["results"][0]["id"]
    post_events(
        client,
        {
            "event_id": "c2",
            "user_id": user,
            "item_id": other,
            "type": "click",
            "request_id": body["request_id"],
            "position": 1,
        },
    )
    post_events(client, {"event_id": "p2", "user_id": user, "item_id": other, "type": "purchase", "revenue": 5.0})
    assert attributions(tmp_path)[f"purchase:{other}"]["via"] == "window"


def test_a_purchase_outside_the_window_is_not_attributed(tmp_path: Path) -> None:
    with TestClient(app_for(tmp_path, attribution_window_days=1)) as client:
        body = client.post("/search", json={"query": "pan", "user_id": "u1"}).json()
        item = body["results"][0]["id"]
        now = time.time()
        post_events(
            client,
            {
                "event_id": "c",
                "user_id": "u1",
                "item_id": item,
                "type": "click",
                "request_id": body["request_id"],
                "timestamp": now - 3 * 86400,
            },
            {"event_id": "p", "user_id": "u1", "item_id": item, "type": "purchase", "revenue": 3.0, "timestamp": now},
        )
    rows = attributions(tmp_path)
    assert rows[f"click:{item}"]["via"] == "request"
    assert rows[f"purchase:{item}"]["via"] == "none" and rows[f"purchase:{item}"]["revenue"] == 3.0


def test_report_counts_what_happened_and_survives_a_restart(tmp_path: Path) -> None:
    expected = {
        "control": {"clicks": 0, "purchases": 0, "revenue": 0.0},
        "personal": {"clicks": 0, "purchases": 0, "revenue": 0.0},
    }
    with TestClient(app_for(tmp_path)) as client:
        for variant in ("control", "personal"):
            for n, user in enumerate(users_in(client, variant, 6)):
                body = client.get(f"/users/{user}/recommendations", params={"session_id": f"s-{user}"}).json()
                item = body["results"][0]["id"]
                post_events(
                    client,
                    {
                        "event_id": f"c-{user}",
                        "user_id": user,
                        "item_id": item,
                        "type": "click",
                        "request_id": body["request_id"],
                    },
                )
                expected[variant]["clicks"] += 1
                if n % 2 == 0:
                    post_events(
                        client,
                        {
                            "event_id": f"p-{user}",
                            "user_id": user,
                            "item_id": item,
                            "type": "purchase",
                            "revenue": 10.0 + n,
                        },
                    )
                    expected[variant]["purchases"] += 1
                    expected[variant]["revenue"] += 10.0 + n
        # The last response is clicked only after a restart.
        late = client.post("/search", json={"query": "knife", "user_id": users_in(client, "control", 1)[0]}).json()
        assert client.get("/experiments/home-recs").status_code == 401
        before = client.get("/experiments/home-recs", headers=HEADERS).json()
    with TestClient(app_for(tmp_path)) as client:
        user = users_in(client, "control", 1)[0]
        post_events(
            client,
            {
                "event_id": "late",
                "user_id": user,
                "item_id": late["results"][1]["id"],
                "type": "click",
                "request_id": late["request_id"],
            },
        )
        expected["control"]["clicks"] += 1
        report = client.get("/experiments/home-recs", headers=HEADERS).json()
        assert client.get("/experiments/nope", headers=HEADERS).status_code == 404
    # The report before the restart had everything but the late click.
    assert sum(v["clicks"] for v in before["variants"]) == sum(t["clicks"] for t in expected.values()) - 1
    by_name = {variant["name"]: variant for variant in report["variants"]}
    for name, totals in expected.items():
        assert by_name[name]["visitors"] == 6
        assert by_name[name]["clicks"] == totals["clicks"]
        assert by_name[name]["purchases"] == totals["purchases"]
        assert by_name[name]["revenue"] == pytest.approx(totals["revenue"])
    assert by_name["control"]["impressions"] == 7
    assert by_name["personal"]["metrics"]["conversion"]["value"] == pytest.approx(0.5)
    assert set(by_name["personal"]["lift"]) == {"ctr", "add_to_cart_rate", "conversion", "revenue_per_visitor"}
    assert "sequential_p_value" in by_name["personal"]["lift"]["conversion"]
    assert report["sample_ratio"]["mismatch"] is False and report["sample_ratio"]["p_value"] == 1.0
    assert "fixed-horizon" in report["peeking"]
    assert report["segments"]["visitor"]["new"]["control"]["visitors"] == 6


def test_metrics_label_responses_by_variant(client: TestClient) -> None:
    user = users_in(client, "personal", 1)[0]
    client.get(f"/users/{user}/recommendations")
    client.post("/search", json={"query": "pan"})
    metrics = client.get("/metrics").text
    assert (
        'aisle_ranked_responses_total{experiment="home-recs",surface="recommendations",variant="personal"} 1.0'
        in metrics
    )
    assert 'aisle_ranked_responses_total{experiment="none",surface="search",variant="none"} 1.0' in metrics


def test_start_end_enabled_and_surfaces(tmp_path: Path) -> None:
    experiments = [
        {**HOME_RECS, "name": "over", "end": "2020-01-01T00:00:00Z"},
        {**HOME_RECS, "name": "off", "enabled": False},
        {**HOME_RECS, "name": "later", "start": "2999-01-01T00:00:00Z"},
        {**HOME_RECS, "name": "recs-only", "surfaces": ["recommendations"]},
    ]
    with TestClient(app_for(tmp_path, experiments)) as client:
        assert "experiment" not in client.post("/search", json={"query": "pan", "user_id": "u1"}).json()
        assert client.get("/users/u1/recommendations").json()["experiment"] == "recs-only"
        listed = {e["name"]: e["running"] for e in client.get("/experiments", headers=HEADERS).json()["experiments"]}
        assert listed == {"over": False, "off": False, "later": False, "recs-only": True}
        assert client.get("/experiments/over", headers=HEADERS).json()["status"] == "ended"


def test_a_variant_overlays_settings_and_rules(tmp_path: Path) -> None:
    experiments = [
        {
            "name": "lexical",
            "surfaces": ["search"],
            "variants": [
                {"name": "control", "share": 0.5, "control": True},
                {
                    "name": "pinned",
                    "share": 0.5,
                    "settings": {"retrieval": "lexical"},
                    "rules": {"pins": [{"item_id": "a-29", "position": 1}]},
                },
            ],
        }
    ]
    with TestClient(app_for(tmp_path, experiments)) as client:
        config = client.app.state.experiments.config("lexical")
        hasher = client.app.state.personal.hasher
        users = {choose_variant(config, hasher.user(f"v{n}")).name: f"v{n}" for n in range(50)}
        pinned = client.post("/search", json={"query": "knife", "user_id": users["pinned"]}).json()
        plain = client.post("/search", json={"query": "knife", "user_id": users["control"]}).json()
        assert pinned["results"][0]["id"] == "a-29" and plain["results"][0]["id"] != "a-29"


@pytest.mark.parametrize(
    "bad",
    [
        {**HOME_RECS, "variants": [{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5}]},
        {**HOME_RECS, "variants": [{"name": "control", "share": 0.5, "control": True}, {"name": "b", "share": 0.6}]},
        {**HOME_RECS, "start": "2030-01-01T00:00:00Z", "end": "2029-01-01T00:00:00Z"},
        {**HOME_RECS, "surfaces": ["checkout"]},
        {
            **HOME_RECS,
            "variants": [
                {"name": "control", "share": 0.5, "control": True, "settings": {"blend": 2}},
                {"name": "b", "share": 0.5},
            ],
        },
    ],
)
def test_invalid_experiments_are_refused_with_the_reason(bad: dict) -> None:
    with pytest.raises(ValueError, match="experiments"):
        ServiceSettings(experiments=[bad])


def test_segment_campaigns_apply_in_their_window(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        yaml.safe_dump(
            {
                "campaigns": [
                    {
                        "name": "email-lamp",
                        "segment": {"channel": "email"},
                        "rules": {"pins": [{"item_id": "a-29", "position": 1}]},
                    },
                    {
                        "name": "past",
                        "end": "2020-01-01T00:00:00Z",
                        "rules": {"pins": [{"item_id": "a-28", "position": 1}]},
                    },
                    {
                        "name": "returning",
                        "segment": {"visitor": "returning"},
                        "surfaces": ["search"],
                        "rules": {"pins": [{"item_id": "a-27", "position": 2}]},
                    },
                ]
            }
        )
    )
    with TestClient(app_for(tmp_path, [], rules_file=rules, returning_after_s=0)) as client:
        email = client.post("/search", json={"query": "knife", "context": {"channel": "EMAIL"}}).json()["results"]
        web = client.post("/search", json={"query": "knife", "context": {"channel": "web"}}).json()["results"]
        by_params = client.get("/search", params={"q": "knife", "channel": "email"}).json()["results"]
        assert email[0]["id"] == "a-29" == by_params[0]["id"]
        assert web[0]["id"] not in ("a-29", "a-28")
        post_events(
            client,
            {"event_id": "old", "user_id": "back", "item_id": "a-1", "type": "view", "timestamp": time.time() - 86400},
        )
        returning = client.post("/search", json={"query": "knife", "user_id": "back"}).json()["results"]
        assert returning[1]["id"] == "a-27"
        assert client.get("/search", params={"q": "knife", "channel": "bad label!"}).status_code == 422


def test_search_analytics(client: TestClient) -> None:
    first = client.post("/search", json={"query": "Knife", "user_id": "a"}).json()
    client.post("/search", json={"query": "knife ", "user_id": "b"})
    client.post("/search", json={"query": "lamp", "filters": {"category": "Nowhere"}})
    post_events(
        client,
        {
            "event_id": "k",
            "user_id": "a",
            "item_id": first["results"][1]["id"],
            "type": "click",
            "request_id": first["request_id"],
        },
    )
    assert client.get("/analytics/search").status_code == 401
    body = client.get("/analytics/search", headers=HEADERS).json()
    assert body["searches"] == 3
    knife = next(q for q in body["top_queries"] if q["query"] == "knife")
    assert (knife["searches"], knife["clicks"], knife["ctr"]["value"]) == (2, 1, 0.5)
    assert body["no_result_queries"] == [{"query": "lamp", "searches": 1}]
    positions = {p["position"]: p for p in body["ctr_by_position"]}
    assert positions[2]["clicks"] == 1 and positions[2]["impressions"] == 2 and positions[1]["clicks"] == 0


def test_cli_report_reads_the_data_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with TestClient(app_for(tmp_path)) as client:
        for user in users_in(client, "control", 3) + users_in(client, "personal", 3):
            client.get(f"/users/{user}/recommendations")
    config = tmp_path / "aisle.yaml"
    config.write_text(yaml.safe_dump({"experiments": [HOME_RECS]}))
    # --config sets AISLE_CONFIG for the process: undone after the test, for the tests after it.
    monkeypatch.setenv("AISLE_CONFIG", str(config))
    assert (
        main(["experiments", "report", "home-recs", "--config", str(config), "--data-dir", str(tmp_path / "data")]) == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert [v["visitors"] for v in report["variants"]] == [3, 3]
    assert main(["experiments", "report", "other", "--config", str(config), "--data-dir", str(tmp_path / "data")]) == 2
    assert "unknown experiment 'other'" in capsys.readouterr().err
    assert main(["experiments", "search", "--config", str(config), "--data-dir", str(tmp_path / "data")]) == 0
