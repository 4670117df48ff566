"""A shop simulator: shoppers with real tastes drive a running ``aisle serve`` through HTTP.

Usage::

    python -m benchmarks.simulator [--shoppers N] [--source scientific|fixture] [--seed S]
        [--workdir DIR] [--out benchmarks/results/simulator.json] [--aa-runs N]

``--aa-runs N`` runs N A/A experiments instead (the control against an identical copy, a fresh
service and salt each), reporting how often each p-value falls below 0.05.

**Shoppers.** Each shopper is a real user of Amazon "Industrial & Scientific" (the UniSRec
``valid`` split, or the small ``fixture/`` sample): their history (bought items, in order) and
the item they really bought next (the target). Their taste: the target, then items of the
target's category, then items of their history's categories (categories are the item text's
category sentence). 80 % are returning shoppers whose history is posted to ``POST /events``
first (one purchase a day, ending a day before the visit); 20 % are new (nothing posted).

**A visit.** ``GET /users/{u}/recommendations?k=10`` (with a session id and a storefront
context: channel, device, region), then ``POST /search`` for the target's category words.
Clicks follow a position-biased model (examination ``1 / position^η``, η = 1, times the item's
attractiveness to this shopper); a click may lead to an add-to-cart and a purchase. The click and
the add-to-cart name the response's ``request_id``; the purchase does not (it is attributed by
the purchase window, as a checkout page's would be), and carries ``revenue``: the item's price,
which is synthetic (a fixed function of the item id: the data have no prices).

**The experiment.** ``home-recs``: ``control`` (no personalization: the popular list, plain
search) against ``personal`` (the shipped defaults), 50/50, sticky by user; the service's own
``GET /experiments/home-recs`` report is the result, with ``GET /analytics/search``.
The index is built from the real items with the real encoder, as ``eval_recsys_http`` does.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aisle.index.storage import atomic_write_json
from aisle.training.recsys_data import shared_data_dir
from benchmarks.eval_recsys_http import Client, build_index, environment
from benchmarks.server import ServerConfig, running_server

REPO = Path(__file__).resolve().parent.parent
DAY_S = 86_400.0
EXPERIMENT = "home-recs"
EXPERIMENT_CONFIG = f"""experiments:
  - name: {EXPERIMENT}
    surfaces: [recommendations, search]
    variants:
      - {{name: control, share: 0.5, control: true}}
      - {{name: personal, share: 0.5}}
"""
#: A/A: the control twice (``personalization: false`` on the second), a new salt per run.
AA_CONFIG = """experiments:
  - name: {name}
    salt: {salt}
    surfaces: [recommendations, search]
    variants:
      - {{name: control, share: 0.5, control: true}}
      - {{name: control-b, share: 0.5, settings: {{personalization: false}}}}
"""
CHANNELS = (("web", 0.6), ("app", 0.3), ("email", 0.1))
DEVICES = (("mobile", 0.6), ("desktop", 0.4))
REGIONS = (("eu", 0.5), ("us", 0.5))


@dataclass(frozen=True)
class Item:
    id: str
    title: str
    category: str
    brand: str
    price: float

    def row(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "category": self.category, "brand": self.brand, "price": self.price}


@dataclass(frozen=True)
class Shopper:
    user_id: str
    history: tuple[str, ...]
    target: str
    returning: bool
    context: dict[str, str]


@dataclass(frozen=True)
class ClickModel:
    """Attractiveness by how close an item is to the shopper's taste; examination by position."""

    position_bias: float = 1.0
    click: tuple[float, float, float, float] = (0.5, 0.15, 0.06, 0.01)  # target, its category, history's, other
    cart: tuple[float, float, float, float] = (0.6, 0.2, 0.1, 0.05)
    buy_after_cart: float = 0.7

    def tier(self, shopper: Shopper, item: Item, items: dict[str, Item]) -> int:
        if item.id == shopper.target:
            return 0
        if item.category == items[shopper.target].category:
            return 1
        if any(items[h].category == item.category for h in shopper.history if h in items):
            return 2
        return 3


def parse_item(item_id: str, text: str) -> Item:
    """UniSRec text is ``title. category words. brand.``; the price is synthetic (see the module docstring)."""
    parts = [part.strip() for part in text.split(". ") if part.strip()]
    title = parts[0] if parts else item_id
    category = parts[1] if len(parts) > 1 else ""
    brand = parts[2].rstrip(".") if len(parts) > 2 else ""
    digest = int.from_bytes(hashlib.sha256(item_id.encode()).digest()[:4], "big") / 2**32
    price = round(5 * (40**digest), 2)  # log-uniform between 5 and 200
    return Item(item_id, title[:300], category[:300], brand[:100], price)


def _pick(rng: random.Random, choices: Sequence[tuple[str, float]]) -> str:
    return rng.choices([name for name, _ in choices], weights=[weight for _, weight in choices])[0]


def load_shoppers(source: str, count: int | None, seed: int) -> tuple[dict[str, Item], list[Shopper]]:
    """Items and shoppers from the Scientific ``valid`` split or the ``fixture`` sample."""
    rng = random.Random(seed)
    root = shared_data_dir()
    sequences: list[tuple[str, tuple[str, ...], str]] = []
    if source == "fixture":
        import csv

        folder = root / "fixture" / "recsys" / "amazon_scientific"
        with (folder / "items.csv").open(encoding="utf-8") as handle:
            items = {row["asin"]: parse_item(row["asin"], row["text"]) for row in csv.DictReader(handle)}
        by_user: dict[str, list[tuple[int, str]]] = {}
        with (folder / "interactions.csv").open(encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                by_user.setdefault(row["user_id"], []).append((int(row["position"]), row["asin"]))
        for user, rows in sorted(by_user.items()):
            ordered = [asin for _, asin in sorted(rows) if asin in items]
            if len(ordered) >= 2:
                sequences.append((user, tuple(ordered[:-1]), ordered[-1]))
    else:
        from aisle.training.recsys_data import load_unisrec

        data = load_unisrec()
        items = {item_id: parse_item(item_id, text) for item_id, text in zip(data.item_ids, data.item_texts)}
        for case in data.valid:
            sequences.append(
                (f"sci{case.user}", tuple(data.item_ids[i] for i in case.history), data.item_ids[case.target])
            )
    rng.shuffle(sequences)
    sequences = sequences[:count] if count else sequences
    shoppers = [
        Shopper(
            user,
            history,
            target,
            returning=rng.random() < 0.8,
            context={"channel": _pick(rng, CHANNELS), "device": _pick(rng, DEVICES), "region": _pick(rng, REGIONS)},
        )
        for user, history, target in sequences
    ]
    return items, shoppers


def history_events(shoppers: Sequence[Shopper], now: float) -> list[dict[str, Any]]:
    """Returning shoppers' histories: one purchase a day, the last a day before ``now``."""
    events = []
    for shopper in shoppers:
        if not shopper.returning:
            continue
        for position, item in enumerate(shopper.history):
            events.append(
                {
                    "event_id": f"hist-{shopper.user_id}-{position}",
                    "user_id": shopper.user_id,
                    "item_id": item,
                    "type": "purchase",
                    "timestamp": now - (len(shopper.history) - position) * DAY_S,
                }
            )
    return events


@dataclass
class VisitTotals:
    """What the simulator itself saw (to check the service's report against)."""

    visits: int = 0
    clicks: Counter = field(default_factory=Counter)
    purchases: Counter = field(default_factory=Counter)
    revenue: Counter = field(default_factory=Counter)
    variants: Counter = field(default_factory=Counter)


class ShopSimulator:
    """Sends one visit per shopper to the service and acts on what it shows."""

    def __init__(self, client: Client, items: dict[str, Item], model: ClickModel, seed: int) -> None:
        self.client = client
        self.items = items
        self.model = model
        self.seed = seed

    def visit(self, shopper: Shopper) -> dict[str, Any]:
        """A recommendations page, then a search; returns the variant and the outcomes sent."""
        rng = random.Random(f"{self.seed}-{shopper.user_id}")
        session = f"s-{shopper.user_id}"
        recs = self.client.get(f"/users/{shopper.user_id}/recommendations", k=10, session_id=session, **shopper.context)
        events = self._act(shopper, recs, rng, session, "rec")
        query = " ".join(self.items[shopper.target].category.split()[-3:]) or self.items[shopper.target].title
        found = self.client.post(
            "/search",
            {"query": query, "k": 10, "user_id": shopper.user_id, "session_id": session, "context": shopper.context},
        )
        events += self._act(shopper, found, rng, session, "search")
        if events:
            self.client.post_events(events)
        return {
            "variant": recs.get("variant"),
            "clicks": sum(e["type"] == "click" for e in events),
            "purchases": sum(e["type"] == "purchase" for e in events),
            "revenue": sum(e.get("revenue", 0.0) for e in events),
        }

    def _act(self, shopper: Shopper, body: dict, rng: random.Random, session: str, page: str) -> list[dict]:
        events: list[dict[str, Any]] = []
        for position, result in enumerate(body["results"], start=1):
            item = self.items.get(result["id"])
            if item is None:
                continue
            tier = self.model.tier(shopper, item, self.items)
            examined = rng.random() < 1.0 / position**self.model.position_bias
            if not (examined and rng.random() < self.model.click[tier]):
                continue
            base = {"user_id": shopper.user_id, "session_id": session, "item_id": item.id}
            key = f"{shopper.user_id}-{page}-{position}"
            events.append(
                {
                    **base,
                    "event_id": f"c-{key}",
                    "type": "click",
                    "request_id": body["request_id"],
                    "position": position,
                }
            )
            if rng.random() < self.model.cart[tier]:
                events.append({**base, "event_id": f"a-{key}", "type": "add_to_cart", "request_id": body["request_id"]})
                if rng.random() < self.model.buy_after_cart:
                    # The checkout names no response: the purchase window attributes it.
                    events.append({**base, "event_id": f"p-{key}", "type": "purchase", "revenue": item.price})
        return events


def run(source: str, shoppers_count: int | None, seed: int, workdir: Path, threads: int = 3) -> dict[str, Any]:
    """Builds the index, serves it with the experiment, sends every shopper, returns the reports."""
    items, shoppers = load_shoppers(source, shoppers_count, seed)
    used = {item for shopper in shoppers for item in (*shopper.history, shopper.target)}
    # The whole catalogue for Scientific; the fixture's own items for a test.
    catalogue = [item.row() for item in items.values() if source != "fixture" or item.id in used]
    index = build_index(catalogue, workdir / "shop")
    config_path = workdir / "experiments.yaml"
    config_path.write_text(EXPERIMENT_CONFIG, encoding="utf-8")
    data_dir = workdir / f"data-{int(time.time() * 1000)}"
    server_config = ServerConfig(workdir / "shop" / "index", data_dir, cpus=None, log_level="WARNING")
    settings = {"AISLE_CONFIG": str(config_path), "AISLE_REQUEST_TIMEOUT_MS": "60000"}
    started = time.perf_counter()
    with environment(settings), running_server(server_config, workdir / "server.log") as server:
        client = Client(server)
        posted = client.post_events(history_events(shoppers, time.time()))
        simulator = ShopSimulator(client, items, ClickModel(), seed)
        with ThreadPoolExecutor(threads) as pool:
            visits = list(pool.map(simulator.visit, shoppers))
        report = client.get(f"/experiments/{EXPERIMENT}")
        analytics = client.get("/analytics/search", limit=10)
        metrics = client._http.get("/metrics").text
    seen = Counter(visit["variant"] for visit in visits)
    return {
        "source": source,
        "shoppers": len(shoppers),
        "returning_shoppers": sum(shopper.returning for shopper in shoppers),
        "items": len(catalogue),
        "index": index,
        "history_events": posted,
        "click_model": ClickModel().__dict__,
        "experiment_config": EXPERIMENT_CONFIG,
        "simulator_saw": {
            "visits_by_variant": dict(seen),
            "clicks": sum(visit["clicks"] for visit in visits),
            "purchases": sum(visit["purchases"] for visit in visits),
            "revenue": round(sum(visit["revenue"] for visit in visits), 2),
        },
        "report": report,
        "search_analytics": analytics,
        "metrics_lines": [line for line in metrics.splitlines() if line.startswith("aisle_ranked_responses_total")],
        "seconds": round(time.perf_counter() - started, 1),
        "load_average": os.getloadavg(),
    }


def run_aa(source: str, shoppers_count: int | None, seed: int, workdir: Path, runs: int, threads: int = 2) -> dict:
    """``runs`` A/A experiments through HTTP over one index: a fresh service and salt per run."""
    items, shoppers = load_shoppers(source, shoppers_count, seed)
    used = {item for shopper in shoppers for item in (*shopper.history, shopper.target)}
    catalogue = [item.row() for item in items.values() if source != "fixture" or item.id in used]
    index = build_index(catalogue, workdir / "shop")
    outcomes = []
    started = time.perf_counter()
    for number in range(runs):
        config_path = workdir / f"aa-{number}.yaml"
        config_path.write_text(AA_CONFIG.format(name=EXPERIMENT, salt=f"aa-{seed}-{number}"), encoding="utf-8")
        data_dir = workdir / f"aa-data-{number}-{int(time.time() * 1000)}"
        server_config = ServerConfig(workdir / "shop" / "index", data_dir, cpus=None, log_level="WARNING")
        settings = {"AISLE_CONFIG": str(config_path), "AISLE_REQUEST_TIMEOUT_MS": "60000"}
        with environment(settings), running_server(server_config, workdir / "server-aa.log") as server:
            client = Client(server)
            client.post_events(history_events(shoppers, time.time()))
            simulator = ShopSimulator(client, items, ClickModel(), seed + number)
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(simulator.visit, shoppers))
            report = client.get(f"/experiments/{EXPERIMENT}")
        treated = next(variant for variant in report["variants"] if not variant["control"])
        outcomes.append(
            {
                "visitors": report["sample_ratio"]["visitors"],
                "srm_p": report["sample_ratio"]["p_value"],
                **{metric: treated["lift"][metric]["p_value"] for metric in treated["lift"]},
            }
        )
    metrics = [name for name in outcomes[0] if name not in ("visitors", "srm_p")]
    return {
        "source": source,
        "shoppers": len(shoppers),
        "index": index,
        "runs": outcomes,
        "share_p_below_0.05": {
            metric: round(sum(o[metric] is not None and o[metric] < 0.05 for o in outcomes) / runs, 4)
            for metric in [*metrics, "srm_p"]
        },
        "seconds": round(time.perf_counter() - started, 1),
        "load_average": os.getloadavg(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", choices=("scientific", "fixture"), default="scientific")
    parser.add_argument("--shoppers", type=int, default=None, help="how many shoppers (default: all)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=REPO / ".cache" / "simulator")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "simulator.json")
    parser.add_argument("--aa-runs", type=int, default=0, help="run this many A/A experiments instead")
    args = parser.parse_args(argv)
    if args.aa_runs:
        aa = run_aa(args.source, args.shoppers, args.seed, args.workdir, args.aa_runs, args.threads)
        atomic_write_json(args.out, aa)
        print(json.dumps(aa["share_p_below_0.05"], indent=2))
        return 0
    result = run(args.source, args.shoppers, args.seed, args.workdir, args.threads)
    atomic_write_json(args.out, result)
    personal = next(v for v in result["report"]["variants"] if not v["control"])
    print(json.dumps({"shoppers": result["shoppers"], "lift": personal["lift"]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
