"""Recommendations and personalized search measured through the HTTP API, on real data.

Usage::

    python -m benchmarks.eval_recsys_http [--split valid|train] [--limit N] [--offset N]
        [--skip-movielens] [--shipped-defaults] [--cadence-days D] [--end-days-ago E] [--half all|even|odd]
        [--set AISLE_X=VALUE ...] [--affinity-grid W,W,...] [--out benchmarks/results/recsys.json]

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

**MovieLens, replayed in time order** (``evaluate_movielens``). Every rating of every user is
posted (user ``mlu<id>``; 4.5–5 purchase, 3.5–4 add_to_cart, 2.5–3 click, below view) in the
order of its real time; when the replay reaches a probe's moment ``t`` the server holds exactly
the ratings before ``t``. Nothing after ``t`` (the user's or anyone's) can reach the profile,
popularity or bought-together pairs, and the rating of a tagged movie by its tagger is held back
until the tag, so the target is never in the history. Two probes:

* tag searches: user U tagged movie M with text T at time t; ``POST /search`` of T with and
  without U, at the same moment on the same server: MRR@100 and HR@10 of M, over all cases and
  each half (even/odd case positions); ``--affinity-grid`` adds arms with the affinity weights
  as request rules (tuning, on the even half);
* next item: each user's last rating is the target, ``GET /users/mlu<id>/recommendations?k=50``
  at its moment: HR@10, NDCG@10, HR@50, NDCG@50 (halves: even/odd user ids).

MovieLens runs always serve the shipped settings (``--set`` on top); results go under
``movielens_tags_defaults`` and ``movielens_next_item_defaults``.

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
from aisle.training.recsys_data import Movie, MovieLensData, UniSRecData, load_movielens, load_unisrec
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

    ``shop_rules``: the built-in ``recommendations`` rules (MMR diversity λ = 0.9);
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


@dataclass(frozen=True)
class Probe:
    """A request of the MovieLens replay, made when the replay reaches ``timestamp``.

    ``kind`` ``tag``: search ``query`` as ``user``, target ``movie``; ``next``: recommendations
    for ``user``, target ``movie`` (their last rating). ``number`` places it in its half.
    """

    kind: str
    number: int
    user: int
    movie: int
    timestamp: int
    query: str = ""


def movielens_timeline(data: MovieLensData, probes: list[Probe]) -> list[tuple[int, dict[str, Any]]]:
    """Every rating as ``(release time, event)``, in release order, up to the last probe.

    A rating is released (posted) at its own time, but a rating of a movie its user tags is
    held back until the user's last tag of it: a probe at time ``t`` sees exactly the ratings
    before ``t``, never its target (see ``evaluate_movielens``). Event times are the real ones,
    shifted so that the last probe is now.
    """
    last = max(probe.timestamp for probe in probes)
    held: dict[tuple[int, int], int] = {}
    for probe in probes:
        if probe.kind == "tag":
            key = (probe.user, probe.movie)
            held[key] = max(held.get(key, 0), probe.timestamp)
    shift = time.time() - last
    timeline = []
    for rating in data.ratings:
        release = max(rating.timestamp, held.get((rating.user, rating.movie), 0))
        if release > last:
            continue  # after every probe: never needed
        kind = next(name for threshold, name in MOVIELENS_TYPES if rating.rating >= threshold)
        event = {
            "event_id": f"ml-{rating.user}-{rating.movie}",
            "user_id": f"mlu{rating.user}",
            "item_id": str(rating.movie),
            "type": kind,
            "timestamp": rating.timestamp + shift,
        }
        timeline.append((release, rating.timestamp, rating.movie, event))
    timeline.sort(key=lambda entry: entry[:3])
    return [(release, event) for release, _, _, event in timeline]


def movielens_probes(data: MovieLensData, limit: int | None) -> tuple[list[Probe], list[Probe]]:
    """The tag cases (``MovieLensData.tag_cases``: users with an earlier rating) and each
    user's next-item case: their last rating (latest time, then movie id) as the target, when
    they rated anything at an earlier time."""
    cases = data.tag_cases()
    cases = cases[:limit] if limit else cases
    tags = [Probe("tag", n, case.user, case.movie, case.timestamp, case.query) for n, case in enumerate(cases)]
    by_user: dict[int, list] = {}
    for rating in data.ratings:
        by_user.setdefault(rating.user, []).append(rating)
    nexts = []
    for user in sorted(by_user):
        ratings = sorted(by_user[user], key=lambda r: (r.timestamp, r.movie))
        target = ratings[-1]
        if ratings[0].timestamp < target.timestamp:
            nexts.append(Probe("next", user, user, target.movie, target.timestamp))
    return tags, nexts[:limit] if limit else nexts


#: Request rules of the tuning arms (``--affinity-grid``): the affinity boost's weights.
def affinity_arm(weight: float) -> dict[str, Any]:
    return {"affinity": {"category": weight, "brand": weight}}


def evaluate_movielens(
    data: MovieLensData,
    limit: int | None,
    workdir: Path,
    index: dict,
    timing: Timing | None = None,
    affinity_grid: Sequence[float] = (),
) -> tuple[dict, dict]:
    """Replays MovieLens in time order through HTTP; probes the search and recommendations.

    Every rating of every user is posted (user ``mlu<id>``) in the order of time; when the replay
    reaches a probe's moment ``t`` the server holds exactly the ratings before ``t`` (those of
    a tagged movie by its tagger are held back until the tag: the target is never in the
    history, and no event after ``t``, the user's or anyone's, can feed the profile, popularity
    or bought-together pairs). Tag probes search the tag with and without the user, same
    moment, same server; next-item probes ask ``GET /users/{u}/recommendations?k=50``.
    Served with the shipped settings (``timing.overrides`` on top).

    Returns:
        the tag-search report and the next-item report.
    """
    timing = timing or Timing()
    tags, nexts = movielens_probes(data, limit)
    probes = sorted(tags + nexts, key=lambda p: (p.timestamp, p.kind, p.number))
    timeline = movielens_timeline(data, probes)
    config = ServerConfig(workdir / "movielens" / "index", workdir / f"data-ml-{int(time.time())}", cpus=None)
    arms: dict[str, dict[str, Any] | None] = {"without_user": None, "with_user": None}
    for weight in affinity_grid:
        arms[f"with_user_affinity_{weight:g}"] = affinity_arm(weight)
    ranks: dict[str, dict[int, int | None]] = {name: {} for name in [*arms, "next_item"]}
    posted = {"accepted": 0, "duplicates": 0, "requests": 0, "retries": 0}
    started = time.perf_counter()
    with environment({**SERVER_SETTINGS, **timing.overrides}):
        with running_server(config, workdir / "server-movielens.log") as server:
            client = Client(server)
            at = 0
            pending: list[Probe] = []
            for probe in [*probes, None]:
                due = at
                while probe is not None and due < len(timeline) and timeline[due][0] < probe.timestamp:
                    due += 1
                if due > at or probe is None:
                    # Events must go in after the probes before them have been answered.
                    _answer(client, pending, arms, ranks)
                    pending = []
                    if due > at:
                        totals = client.post_events([event for _, event in timeline[at:due]])
                        posted = {key: posted[key] + totals[key] for key in posted}
                        at = due
                if probe is not None:
                    pending.append(probe)
            server_rss = server.rss_mib()
    seconds = round(time.perf_counter() - started, 2)
    common = {
        "index": index,
        "settings": dict(timing.overrides),
        "events": "every rating of every user, posted in time order (real times, shifted: the last probe is now)",
        "rating_to_type": {name: threshold for threshold, name in MOVIELENS_TYPES},
        "posted": posted,
        "replay_s": seconds,
        "server_rss_mib": server_rss,
    }
    tag_report: dict[str, Any] = {
        **common,
        "cases": len(tags),
        "users": len({probe.user for probe in tags}),
        "half_split": "even/odd case positions (cases ordered by user, movie, tag)",
        "arms": {name: rules for name, rules in arms.items() if rules is not None},
    }
    for name in arms:
        tag_report[name] = _halves([ranks[name][probe.number] for probe in tags])
    ratio = {
        half: round(tag_report["with_user"][half]["MRR"] / tag_report["without_user"][half]["MRR"], 3)
        for half in ("all", "even", "odd")
        if tag_report["without_user"][half]["MRR"]
    }
    tag_report["mrr_ratio_with_without"] = ratio
    next_report = {
        **common,
        "users": len(nexts),
        "half_split": "even/odd MovieLens user ids",
        "target": "each user's last rating (latest time, then movie id); history: their ratings at earlier times",
        "request": "GET /users/mlu<id>/recommendations?k=50",
        **_halves([ranks["next_item"][probe.number] for probe in nexts], by=[probe.user for probe in nexts]),
    }
    print(f"movielens tags: {json.dumps({k: v for k, v in tag_report.items() if k.startswith('with')})}")
    print(f"movielens tags ratio with/without MRR: {ratio}", flush=True)
    print(f"movielens next item: {next_report['all']}", flush=True)
    return tag_report, next_report


def _answer(
    client: Client, probes: list[Probe], arms: dict[str, dict[str, Any] | None], ranks: dict[str, dict]
) -> None:
    """Sends every arm of ``probes`` (answered by the same server state) and keeps the ranks."""

    def one(job: tuple[str, Probe]) -> tuple[str, int, int | None]:
        name, probe = job
        if probe.kind == "next":
            body = client.get(f"/users/mlu{probe.user}/recommendations", k=50)
        else:
            request: dict[str, Any] = {"query": probe.query, "k": 100}
            if name != "without_user":
                request["user_id"] = f"mlu{probe.user}"
            if arms[name] is not None:
                request["rules"] = arms[name]
            body = client.post("/search", request)
        return name, probe.number, target_rank([r["id"] for r in body["results"]], str(probe.movie))

    jobs = [("next_item", p) if p.kind == "next" else (name, p) for p in probes for name in arms]
    jobs = list(dict.fromkeys(jobs))  # a next-item probe once, not once per arm
    for name, number, rank in parallel(one, jobs):
        ranks[name][number] = rank


def _halves(ranks: list[int | None], by: Sequence[int] | None = None) -> dict[str, Any]:
    """Metrics over all cases and over each half (even/odd positions, or even/odd ``by``)."""
    keys = list(by) if by is not None else list(range(len(ranks)))
    even = [rank for key, rank in zip(keys, ranks) if key % 2 == 0]
    odd = [rank for key, rank in zip(keys, ranks) if key % 2 == 1]
    return {"all": summarize_ranks(ranks), "even": summarize_ranks(even), "odd": summarize_ranks(odd)}


def movielens_row(movie: Movie) -> dict[str, str]:
    """A movie as a catalogue product: its genres are its category (a bag of components for
    the affinity boost, ``aisle.service.personal.affinity``)."""
    genres = [genre for genre in movie.genres if genre != "(no genres listed)"]
    return {"id": str(movie.movie), "title": movie.title, "category": " > ".join(genres)}


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
    parser.add_argument(
        "--affinity-grid",
        help="MovieLens tag searches also with these affinity weights as request rules, e.g. 0,0.05,0.1 (tuning)",
    )
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
        if not name.startswith("AISLE_") or not value:
            parser.error(f"--set takes AISLE_NAME=VALUE (a service setting's variable), not {assignment!r}")
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
        rows = [movielens_row(movie) for movie in movies.movies.values()]
        index = build_index(rows, args.workdir / "movielens")
        grid = [float(value) for value in args.affinity_grid.split(",")] if args.affinity_grid else []
        tag_report, next_report = evaluate_movielens(movies, args.limit, args.workdir, index, timing, grid)
        suffix = "" if not overrides else "_" + "_".join(f"{k.lower()}={v}" for k, v in sorted(overrides.items()))
        report["movielens_tags_defaults" + suffix] = {"command": command, **tag_report}
        report["movielens_next_item_defaults" + suffix] = {"command": command, **next_report}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, report)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
