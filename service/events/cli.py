"""``aisle forget USER ...``: erase shoppers' events and profiles from the command line."""

from __future__ import annotations

import argparse
from pathlib import Path

from aisle.cli import add_common_options


def register_forget(commands: argparse._SubParsersAction) -> None:
    """Adds ``aisle forget`` (registered by ``aisle.service.cli.register``, the service's entry point)."""

    forget = commands.add_parser(
        "forget",
        help="erase users: their events, linked sessions and profiles (running servers follow within a second)",
    )
    forget.add_argument("users", nargs="+", metavar="USER", help="the shop's user id, as sent in events")
    forget.add_argument("--data-dir", type=Path, help="where events and profiles are stored")
    add_common_options(forget)
    forget.set_defaults(handler=_forget)


def _forget(args: argparse.Namespace) -> int:
    """Deletes each user's events (the same erasure as ``DELETE /users/{id}``) and reports counts.

    Works on the configured store (SQLite in the data directory, or ``AISLE_DATABASE_URL``).
    Servers on the same store see the erasure counter move and rebuild their profiles; a server
    started later replays a log without the events.
    """
    from aisle.cli import CommandError, load_settings
    from aisle.service.attribution.served import SERVED_FILE, open_served_log
    from aisle.service.events.identity import SECRET_FILE, IdHasher, load_or_create_secret
    from aisle.service.events.store import EVENTS_FILE, EventStoreError
    from aisle.service.personal.runtime import open_event_store
    from aisle.service.settings import ServiceSettings

    settings = load_settings(ServiceSettings, data_dir=args.data_dir)
    if not (settings.data_dir / SECRET_FILE).is_file() or (
        not settings.database_url and not (settings.data_dir / EVENTS_FILE).is_file()
    ):
        raise CommandError(f"no event store in {settings.data_dir} (nothing to erase); pass --data-dir")
    try:
        hasher = IdHasher(load_or_create_secret(settings.data_dir))
        store = open_event_store(settings, hasher.check_value())
    except (ValueError, OSError, EventStoreError) as exc:
        raise CommandError(str(exc)) from None
    # What each shopper was shown (and their experiment exposures) goes with their events.
    served = None
    if settings.database_url or (settings.data_dir / SERVED_FILE).is_file():
        served = open_served_log(settings)
    try:
        for number, user in enumerate(args.users, start=1):
            try:
                user_key = hasher.user(user)
                erasure = store.erase_user(user_key)
                responses = served.erase(user_key, list(erasure.session_keys)) if served is not None else 0
            except EventStoreError as exc:
                raise CommandError(
                    f"user {number} of {len(args.users)}: {exc}; the users before it are erased"
                ) from None
            print(
                f"user {number}: erased {erasure.events} events and {erasure.sessions} linked sessions"
                f" ({responses} served responses and exposures)"
            )
    finally:
        store.close()
        if served is not None:
            served.close()
    print("running servers drop the erased users from their profiles within a second")
    return 0
