"""Recommendations and personalized search measured through the HTTP API, on real data.

Usage::

    python -m benchmarks.eval_recsys_http [--split valid|train] [--limit N] [--offset N]
        [--skip-movielens] [--shipped-defaults] [--cadence-days D] [--end-days-ago E] [--half all|even|odd]
        [--set AISLE_X=VALUE ...] [--out benchmarks/results/recsys.json]

``--shipped-defaults`` serves with the shipped settings (only ``--set`` changes them) in one run:
the protocol of the issue's table. ``--cadence-days`` spaces a history's purchases (a shop's
customers buy days or months apart), ``--end-days-ago`` places the last one before the
evaluation (180: a customer returning after half a year); results go under
``scientific_<split>_defaults_cadence<D>d_end<E>d``. Settings were chosen with
``--split train`` (never on ``valid``).

**Amazon Scientific (UniSRec split).** The 4,385 items (item text = the ``text`` column) are
indexed with the real encoder (``aisle.embed.create_encoder``: bundled MiniLM, ONNX int8) by
``aisle.index.build.build_version``; ``aisle serve`` runs in a subprocess on 127.0.0.1. Every user's
history is posted to ``POST /events`` (user id = the user index, one ``purchase`` event per
position: the data are reviews of bought items), then ``GET /users/{u}/recommendations?k=50``
ranks all items for each user: HR@10, NDCG@10, HR@50, NDCG@50 of the target, over all users,
history items NOT masked (``recommend_exclude=none``). Positions map to time as one day per
step, the last history item one day before the evaluation: event ``i`` of a history of ``n`` is
at ``now − (n − i)·1 day``, so half-lives and windows below read in steps. The same stored
events are then served again with ``decay=false`` (a restart: profiles rebuilt from the log),
which shows what recency decay is worth. Settings were tuned on the ``train`` split (each
user's longest training row, its last item as the target), never on ``valid``.

**MovieLens tags.** User U tagged movie M with text T at time t: T is the query, U's ratings
before t (without M itself) the history, posted with their real time gaps ending now (the tag
moment). Ratings map to event types: 4.5–5 purchase, 3.5–4 add_to_cart, 2.5–3 click, below
view. ``POST /search`` with and without the user id: MRR@100 and HR@10 of M.

Results go to ``benchmarks/results/recsys.json`` with the settings and timings.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aisle.index.storage import atomic_write_json
from aisle.training.metrics import summarize_ranks, target_rank
from aisle.training.recsys_data import MovieLensData, UniSRecData, load_movielens, load_unisrec
from benchmarks.server import RunningServer, ServerConfig, running_server

REPO = Path(__file__).resolve().parent.parent
DAY_S = 86_400.0
BATCH = 500
#: Tuned on the train split (``--split train``; see the module docstring and the report).
SCIENTIFIC_SETTINGS: dict[str, str] = {
    "AISLE_HALF_LIVES_S": json.dumps({"purchase": 1.0 * DAY_S}),
    "AISLE_BOUGHT_TOGETHER_WINDOW_S": str(3 * DAY_S),
    "AISLE_BOUGHT_TOGETHER_WEIGHT": "0.4",
    "AISLE_RECOMMEND_EXCLUDE": "none",
}
#: Quality runs, not latency runs (``benchmarks/run.py`` measures latency): on a shared machine
#: the default 2 s request budget would turn slow answers into 503s.
SERVER_SETTINGS = {"AISLE_REQUEST_TIMEOUT_MS": "60000"}
MOVIELENS_TYPES = ((4.5, "purchase"), (3.5, "add_to_cart"), (2.5, "click"), (0.0, "view"))


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Sets ``values`` in ``os.environ`` (the server subprocess inherits them), then restores."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def build_index(rows: list[dict[str, str]], root: Path, model: str | None = None) -> dict[str, Any]:
    """Writes ``rows`` as a JSON Lines catalogue and publishes a version under ``root/index``.

    ``model``: a local model directory (e.g. one ``aisle train`` wrote) instead of the bundled one.
    """
    from aisle.embed import EncoderConfig, create_encoder, prepare_model
    from aisle.index.build import BuildOptions, build_version
    from aisle.index.catalog import load_catalog

    root.mkdir(parents=True, exist_ok=True)
    catalog_path = root / "catalog.jsonl"
    with catalog_path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    config = EncoderConfig(model=model) if model else EncoderConfig()
    prepare_model(config)
    encoder = create_encoder(config)
    report = build_version(load_catalog(catalog_path), root / "index", encoder, BuildOptions(show_progress=False))
    return {
        "version": report.version,
        "items": report.items,
        "encoded": report.encoded,
        "reused": report.reused,
        "seconds": round(report.seconds, 2),
        "model": encoder.name,
        "fingerprint": encoder.fingerprint,
    }


class Client:
    """A keep-alive HTTP client for the running server."""

    def __init__(self, server: RunningServer) -> None:
        import httpx

        self._http = httpx.Client(base_url=server.url, timeout=120.0)

    def post_events(self, events: list[dict[str, Any]], attempts: int = 10) -> dict[str, int]:
        """Posts in batches; a 503/504 (e.g. over the time budget on a busy machine) is retried
        after ``Retry-After``, which the contract makes safe: re-sent event ids are duplicates."""
        totals = {"accepted": 0, "duplicates": 0, "requests": 0, "retries": 0}
        for start in range(0, len(events), BATCH):
            for attempt in range(attempts):
                response = self._http.post("/events", json={"events": events[start : start + BATCH]})
                totals["requests"] += 1
                if response.status_code not in (503, 504) or attempt == attempts - 1:
                    break
                totals["retries"] += 1
                time.sleep(float(response.headers.get("Retry-After", "1")))
            response.raise_for_status()
            body = response.json()
            totals["accepted"] += body["accepted"]
            totals["duplicates"] += body["duplicates"]
        return totals

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        return self._send("GET", path, params=params)

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._send("POST", path, json=body)

    def _send(self, method: str, path: str, attempts: int = 5, **kwargs: Any) -> dict[str, Any]:
        """A read, retried after ``Retry-After`` on 503/504 (a shared, busy machine)."""
        for attempt in range(attempts):
            response = self._http.request(method, path, **kwargs)
            if response.status_code not in (503, 504) or attempt == attempts - 1:
                break
            time.sleep(float(response.headers.get("Retry-After", "1")))
        response.raise_for_status()
        return response.json()


@dataclass(frozen=True)
class Timing:
    """Where the histories sit in time, and which settings serve them.

    Attributes:
        cadence_s: seconds between two consecutive purchases of a history.
        end_s: seconds between the last purchase and the evaluation.
        shipped_defaults: serve with the shipped settings (only ``overrides`` on top).
        overrides: settings changed on top of the shipped ones (tuning runs).
        half: ``even``/``odd`` users only (tune on one half, report on the other), or ``all``.
        offset: users skipped before the first evaluated one (tune on users beyond the reported
            ones: ``--offset 2000 --limit 2000`` never sees the first 2,000).
    """

    cadence_s: float = DAY_S
    end_s: float = DAY_S
    shipped_defaults: bool = False
    overrides: dict[str, str] = field(default_factory=dict)
    half: str = "all"
    offset: int = 0

    def select(self, cases: list) -> list:
        cases = cases[self.offset :]
        if self.half == "all":
            return cases
        return [case for case in cases if (int(case.user) % 2 == 0) == (self.half == "even")]


def parallel(function: Callable[[Any], Any], items: Sequence[Any], threads: int = 3) -> list[Any]:
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(function, items))


def history_events(
    data: UniSRecData, cases: list, split: str, now: float, cadence_s: float = DAY_S, end_s: float = DAY_S
) -> list[dict[str, Any]]:
    """One purchase per history position, ``cadence_s`` apart, the last one ``end_s`` before ``now``."""
    events = []
    for case in cases:
        length = len(case.history)
        for position, item in enumerate(case.history):
            events.append(
                {
                    "event_id": f"sci-{split}-{case.user}-{position}",
                    "user_id": f"u{case.user}",
                    "item_id": data.item_ids[item],
                    "type": "purchase",
                    "timestamp": now - end_s - (length - 1 - position) * cadence_s,
                }
            )
    return events


def rank_targets(client: Client, data: UniSRecData, cases: list) -> list[int | None]:
    def one(case) -> int | None:
        body = client.get(f"/users/u{case.user}/recommendations", k=50)
        return target_rank([result["id"] for result in body["results"]], data.item_ids[case.target])

    return parallel(one, cases)


def variants(workdir: Path) -> dict[str, dict[str, Any]]:
    """What each Scientific run changes over ``SCIENTIFIC_SETTINGS``.

    ``shop_rules``: the built-in ``recommendations`` rules (MMR diversity λ = 0.8);
    ``relevance_only``: λ = 1 (a rules file), the ranking the protocol measures;
    ``profile_only``: relevance only, without "bought together": the profile and popularity
    alone, where recency decay is easiest to see.
    """
    rules = workdir / "relevance-only-rules.yaml"
    rules.write_text("surfaces:\n  recommendations:\n    diversity: {lambda: 1.0}\n", encoding="utf-8")
    return {
        "shop_rules": {},
        "relevance_only": {"AISLE_RULES_FILE": str(rules)},
        "profile_only": {"AISLE_RULES_FILE": str(rules), "AISLE_BOUGHT_TOGETHER_WEIGHT": "0"},
    }


def evaluate_scientific(
    data: UniSRecData,
    split: str,
    limit: int | None,
    workdir: Path,
    index: dict,
    only: Sequence[str] = (),
    timing: Timing | None = None,
) -> dict:
    """Posts every history once, then serves the stored events under each variant, decay on and off.

    With ``timing.shipped_defaults`` one server run only: the shipped settings, nothing changed.
    """
    timing = timing or Timing()
    cases = data.valid if split == "valid" else data.last_train_cases()
    cases = timing.select(cases)
    cases = cases[:limit] if limit else cases
    data_dir = workdir / f"data-{split}-{len(cases)}-{int(time.time())}"
    config = ServerConfig(workdir / "scientific" / "index", data_dir, cpus=None)
    results: dict[str, Any] = {
        "split": split,
        "users": len(cases),
        "index": index,
        "settings": {**SERVER_SETTINGS, **SCIENTIFIC_SETTINGS},
        "time_per_position_s": timing.cadence_s,
        "last_event_before_now_s": timing.end_s,
        "users_half": timing.half,
        "users_offset": timing.offset,
        "events": "one purchase per history position",
        "variants": {},
    }
    if timing.shipped_defaults:
        results["settings"] = dict(SERVER_SETTINGS)
    posted = False
    for variant, changes in variants(workdir).items():
        if only and variant not in only:
            continue
        if timing.shipped_defaults and variant != "shop_rules":
            continue
        runs: dict[str, Any] = {"changes": {k: v for k, v in changes.items() if k != "AISLE_RULES_FILE"}}
        if "AISLE_RULES_FILE" in changes:
            runs["changes"]["rules"] = Path(changes["AISLE_RULES_FILE"]).read_text(encoding="utf-8")
        for decay in (True,) if timing.shipped_defaults else (True, False):
            name = "decay" if decay else "no_decay"
            settings = {**SERVER_SETTINGS, **SCIENTIFIC_SETTINGS, **changes, "AISLE_DECAY": str(decay).lower()}
            if timing.shipped_defaults:
                settings = {**SERVER_SETTINGS, **timing.overrides}
            with environment(settings), running_server(config, workdir / f"server-{variant}-{name}.log") as server:
                client = Client(server)
                run: dict[str, Any] = {"startup_s": server.startup_seconds}
                if not posted:  # later runs reload the same stored events at start-up
                    started = time.perf_counter()
                    events = history_events(data, cases, split, time.time(), timing.cadence_s, timing.end_s)
                    run["posted"] = client.post_events(events)
                    run["post_s"] = round(time.perf_counter() - started, 2)
                    posted = True
                sample = cases[0]
                assert client.get(f"/users/u{sample.user}/profile")["events"]["total"] == len(sample.history)
                started = time.perf_counter()
                ranks = rank_targets(client, data, cases)
                run["query_s"] = round(time.perf_counter() - started, 2)
                run["metrics"] = summarize_ranks(ranks)
                run["server_rss_mib"] = server.rss_mib()
                runs[name] = run
                print(f"scientific {split} {variant} {name}: {run['metrics']}", flush=True)
        results["variants"][variant] = runs
    return results


def movielens_events(data: MovieLensData, cases: list, now: float) -> list[dict[str, Any]]:
    events = []
    for number, case in enumerate(cases):
        for rating in case.history:
            kind = next(name for threshold, name in MOVIELENS_TYPES if rating.rating >= threshold)
            events.append(
                {
                    "event_id": f"ml-{number}-{rating.movie}-{rating.timestamp}",
                    "user_id": f"ml{number}",
                    "item_id": str(rating.movie),
                    "type": kind,
                    "timestamp": now - (case.timestamp - rating.timestamp),
                }
            )
    return events


def evaluate_movielens(
    data: MovieLensData, limit: int | None, workdir: Path, index: dict, timing: Timing | None = None
) -> dict:
    """Posts every case's history once; searches without and with the user, decay on and off.

    With ``timing.shipped_defaults``: decay on only, with ``timing.overrides`` on top.
    """
    timing = timing or Timing()
    cases = data.tag_cases()
    cases = cases[:limit] if limit else cases
    config = ServerConfig(workdir / "movielens" / "index", workdir / f"data-ml-{int(time.time())}", cpus=None)
    result: dict[str, Any] = {
        "cases": len(cases),
        "index": index,
        "half_split": "even/odd case positions",
        "rating_to_type": {name: threshold for threshold, name in MOVIELENS_TYPES},
    }
    result["settings"] = dict(timing.overrides)
    for decay in (True,) if timing.shipped_defaults else (True, False):
        with environment({**SERVER_SETTINGS, **timing.overrides, "AISLE_DECAY": str(decay).lower()}):
            with running_server(config, workdir / f"server-movielens-{decay}.log") as server:
                client = Client(server)
                if decay:
                    started = time.perf_counter()
                    result["posted"] = client.post_events(movielens_events(data, cases, time.time()))
                    result["post_s"] = round(time.perf_counter() - started, 2)
                    result["without_user"] = _tag_metrics(client, cases, with_user=False)
                result["with_user" if decay else "with_user_no_decay"] = _tag_metrics(client, cases, with_user=True)
    print(f"movielens: {json.dumps({k: v for k, v in result.items() if k.startswith('with')})}", flush=True)
    return result


def _tag_metrics(client: Client, cases: list, *, with_user: bool) -> dict[str, Any]:
    """MRR@100 and HR@10 of the tagged movie, over all cases and over each half."""

    def one(numbered) -> int | None:
        number, case = numbered
        body: dict[str, Any] = {"query": case.query, "k": 100}
        if with_user:
            body["user_id"] = f"ml{number}"
        found = client.post("/search", body)["results"]
        return target_rank([r["id"] for r in found], str(case.movie))

    ranks = parallel(one, list(enumerate(cases)))
    return {"all": summarize_ranks(ranks), "even": summarize_ranks(ranks[0::2]), "odd": summarize_ranks(ranks[1::2])}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--split", choices=["valid", "train"], default="valid")
    parser.add_argument("--limit", type=int, help="first N users / tag cases only (quick runs)")
    parser.add_argument("--offset", type=int, default=0, help="skip the first N Scientific users (tuning runs)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="AISLE_X=VALUE",
        help="override a server setting of the Scientific runs (tuning)",
    )
    parser.add_argument("--variants", nargs="*", default=[], help="only these Scientific variants")
    parser.add_argument(
        "--shipped-defaults",
        action="store_true",
        help="one run with the shipped settings (only --set changes them), not the tuned variants",
    )
    parser.add_argument("--cadence-days", type=float, default=1.0, help="days between two purchases of a history")
    parser.add_argument(
        "--end-days-ago", type=float, default=1.0, help="days between the last purchase and the evaluation"
    )
    parser.add_argument("--half", choices=["all", "even", "odd"], default="all", help="users of one half only")
    parser.add_argument("--skip-movielens", action="store_true")
    parser.add_argument("--skip-scientific", action="store_true")
    parser.add_argument("--model", help="a local model directory (e.g. from aisle train) to index and serve with")
    parser.add_argument("--workdir", type=Path, default=REPO / ".cache" / "aisle" / "eval-recsys")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "recsys.json")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    command = " ".join(["python -m benchmarks.eval_recsys_http", *argv])
    os.environ.setdefault("AISLE_CACHE_DIR", str(REPO / ".cache" / "aisle"))
    overrides: dict[str, str] = {}
    for assignment in args.set:
        name, _, value = assignment.partition("=")
        SCIENTIFIC_SETTINGS[name] = value
        overrides[name] = value
    if args.model:
        SCIENTIFIC_SETTINGS["AISLE_MODEL"] = overrides["AISLE_MODEL"] = str(Path(args.model).resolve())
        args.workdir = args.workdir / ("model-" + Path(args.model).name)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    timing = Timing(
        args.cadence_days * DAY_S, args.end_days_ago * DAY_S, args.shipped_defaults, overrides, args.half, args.offset
    )
    report: dict[str, Any] = json.loads(args.out.read_text()) if args.out.exists() else {}
    report.pop("command", None)  # each section records the command that produced it
    if not args.skip_scientific:
        data = load_unisrec()
        rows = [{"id": item, "title": text} for item, text in zip(data.item_ids, data.item_texts)]
        index = build_index(rows, args.workdir / "scientific", args.model)
        key = f"scientific_{args.split}" + ("_" + Path(args.model).name if args.model else "")
        if args.shipped_defaults:
            key += f"_defaults_cadence{args.cadence_days:g}d_end{args.end_days_ago:g}d"
            key += "" if args.half == "all" else f"_{args.half}"
            key += f"_offset{args.offset}" if args.offset else ""
        report[key] = {
            "command": command,
            **evaluate_scientific(data, args.split, args.limit, args.workdir, index, args.variants, timing),
        }
    if not args.skip_movielens:
        movies = load_movielens()
        rows = [
            {"id": str(m.movie), "title": m.title, "description": ", ".join(m.genres)} for m in movies.movies.values()
        ]
        index = build_index(rows, args.workdir / "movielens")
        key = "movielens_tags" + ("_defaults" if args.shipped_defaults else "")
        report[key] = {"command": command, **evaluate_movielens(movies, args.limit, args.workdir, index, timing)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, report)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
