"""``aisle experiments report NAME`` and ``aisle experiments search``: the reports offline.

The config file (``--config``) names the experiments; ``main`` applies it.

They read what the service writes (``events.sqlite3`` and ``served.sqlite3`` in the data
directory, or the PostgreSQL database of ``database_url``), read-only except for the sequential
test's record of this look, so they run beside a live service or on a copy of its data. Output is the JSON of ``GET /experiments/{name}`` and
``GET /analytics/search``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aisle.service.settings import ServiceSettings


def register(commands: argparse._SubParsersAction) -> None:
    """Adds ``aisle experiments``; called by the service's ``register`` (``aisle.service.cli``)."""
    from aisle.cli import add_common_options

    experiments = commands.add_parser("experiments", help="A/B experiment reports and search analytics")
    actions = experiments.add_subparsers(dest="experiments_command", required=True, metavar="ACTION")
    report = actions.add_parser("report", help="print an experiment's report as JSON")
    report.add_argument("name", help="the experiment's name in the config file")
    search = actions.add_parser("search", help="print search analytics (top queries, no results, CTR) as JSON")
    search.add_argument("--days", type=float, help="only the last DAYS (default: everything retained)")
    search.add_argument("--limit", type=int, default=20, help="queries listed (default 20)")
    for parser in (report, search):
        parser.add_argument("--data-dir", type=Path, help="the service's data directory (default: settings data_dir)")
        add_common_options(parser)
    report.set_defaults(handler=_report)
    search.set_defaults(handler=_search)


def _settings(args: argparse.Namespace) -> ServiceSettings:
    """The settings (``--config`` was applied by ``aisle.cli.main``) with ``--data-dir`` on top."""
    from aisle.cli import CommandError, load_settings
    from aisle.service.settings import ServiceSettings

    settings = load_settings(ServiceSettings, data_dir=args.data_dir)
    if not settings.database_url and not settings.data_dir.is_dir():
        raise CommandError(f"data directory not found: {settings.data_dir} (pass --data-dir)")
    return settings


def _report(args: argparse.Namespace) -> int:
    from aisle.cli import CommandError
    from aisle.service.attribution.served import open_served_log
    from aisle.service.experiments.report import experiment_report

    settings = _settings(args)
    config = next((experiment for experiment in settings.experiments if experiment.name == args.name), None)
    if config is None:
        known = [experiment.name for experiment in settings.experiments]
        raise CommandError(f"unknown experiment '{args.name}'; the config names {known or 'none'}")
    served = open_served_log(settings)
    try:
        report = experiment_report(config, served)
    finally:
        served.close()
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def _search(args: argparse.Namespace) -> int:
    from aisle.cli import CommandError
    from aisle.service.attribution.analytics import search_analytics
    from aisle.service.attribution.served import open_served_log

    if args.limit < 1:
        raise CommandError(f"--limit must be at least 1, not {args.limit}")
    if args.days is not None and not args.days > 0:
        raise CommandError(f"--days must be positive, not {args.days:g}")
    settings = _settings(args)
    served = open_served_log(settings)
    try:
        body = search_analytics(served, days=args.days, limit=args.limit)
    finally:
        served.close()
    json.dump(body, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0
