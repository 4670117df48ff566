"""``aisle build``, ``aisle compact``, ``aisle versions`` and ``aisle rollback``: the offline side of an index."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from aisle.cli import (
    CommandError,
    add_common_options,
    load_encoder,
    load_image_encoder,
    load_settings,
    positive_float,
    positive_int,
)
from aisle.index.ann import INDEX_TYPES, AnnParams
from aisle.settings import AisleSettings

if TYPE_CHECKING:
    import numpy as np

    from aisle.index.catalog import Catalog
    from aisle.index.distributed import RayBuild

#: ``--ray`` without an address: start a local cluster for the build.
LOCAL_RAY = "local"


def _build(args: argparse.Namespace) -> int:
    from aisle.index.build import BuildOptions, build_version
    from aisle.index.catalog import CatalogError, load_catalog, parse_column_map
    from aisle.index.pictures import PictureOptions
    from aisle.index.schema import SchemaError
    from aisle.index.versions import VersionError

    started = time.perf_counter()
    settings = load_settings(
        AisleSettings,
        index_dir=args.out,
        model=args.model,
        image_model=args.image_model,
        image_fetch_urls=True if args.fetch_image_urls else None,
    )
    hnsw = {
        name: getattr(args, name)
        for name in ("hnsw_m", "ef_construction", "ef_search", "ivf_lists", "nprobe")
        if getattr(args, name) is not None
    }
    options = BuildOptions(
        index_type=args.index_type,
        memory_budget_mb=args.memory_budget_mb,
        **hnsw,
        keep_versions=args.keep,
        show_progress=not args.no_progress,
        fields=settings.fields,
        pictures=PictureOptions(fetch_urls=settings.image_fetch_urls, fetch_timeout_s=settings.image_fetch_timeout_s),
    )
    try:
        options.validate()
        column_map = {**settings.columns, **parse_column_map(args.map)}
        catalog = load_catalog(args.catalog, column_map, skip_bad_rows=args.skip_bad_rows)
    except (CatalogError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    for problem in catalog.skipped:
        print(f"skipped {problem}", file=sys.stderr)
    print(
        f"loaded {len(catalog)} products from {args.catalog}"
        + (f" ({len(catalog.skipped)} bad rows skipped)" if catalog.skipped else ""),
        file=sys.stderr,
    )
    _check_writable(settings.index_dir)  # before minutes of encoding, not after
    # The image model first: a broken one must fail in a second, not after minutes of text.
    image_encoder = load_image_encoder(settings)
    encoder = load_encoder(settings)
    folded = _fold_changes(
        settings.index_dir, catalog, encoder.fingerprint, args.supersede_changes, settings.database_url
    )
    if args.ray is not None:
        options = replace(options, parallel=_ray_build(args, settings))
    try:
        report = build_version(
            folded[0],
            settings.index_dir,
            encoder,
            options,
            image_encoder,
            live_sequence=folded[1],
            known_vectors=folded[2],
        )
    except (VersionError, SchemaError) as exc:  # e.g. another build is running, a bad fields: entry
        raise CommandError(str(exc)) from None
    except ImportError as exc:  # --ray without Ray installed: the message says what to install
        raise CommandError(str(exc)) from None
    except ConnectionError as exc:  # --ray ADDRESS with no cluster there
        raise CommandError(f"cannot reach the Ray cluster at {args.ray}: {exc}") from None
    except (ValueError, OSError) as exc:
        raise CommandError(f"cannot build the index under {settings.index_dir}: {exc}") from None
    seconds = time.perf_counter() - started
    if report.pictures_summary:
        print(
            report.pictures_summary + (f"; image space: {image_encoder.name}" if image_encoder else ""), file=sys.stderr
        )
    print(
        f"published {report.version}: {report.items} items ({report.encoded} encoded, "
        f"{report.reused} re-used, {report.skipped} skipped), {report.index_type} index, "
        f"in {seconds:.2f} s (build {report.seconds:.2f} s)"
    )
    if args.json:
        print(
            json.dumps(
                {
                    "version": report.version,
                    "items": report.items,
                    "encoded": report.encoded,
                    "reused": report.reused,
                    "skipped": report.skipped,
                    "index_type": report.index_type,
                    "reused_files": report.reused_files,
                    "seconds": round(seconds, 3),
                    "build_seconds": round(report.seconds, 3),
                    "timings": report.timings,
                    "pictures": report.pictures,
                    "pictures_reused": report.pictures_reused,
                    "image_model": image_encoder.name if image_encoder is not None else None,
                    "path": str(report.path),
                }
            )
        )
    return 0


def _fold_changes(
    index_root: Path, catalog: Catalog, fingerprint: str, supersede: bool, database_url: str | None
) -> tuple[Catalog, int, dict[str, np.ndarray]]:
    """The catalogue with the live catalogue's logged changes applied, their last seq and vectors.

    With ``supersede`` the file is taken as already including every logged change: none is
    applied, and the servers apply only the changes accepted after this moment.
    """
    from aisle.index.catalog import Catalog
    from aisle.index.changes import ChangeLogError, existing_change_log, fold_log

    try:
        if supersede:
            change_log = existing_change_log(index_root, database_url)
            sequence = 0
            if change_log is not None:
                sequence = change_log.last_seq()
                change_log.close()
            print(f"the catalogue supersedes the live changes up to {sequence}", file=sys.stderr)
            return catalog, sequence, {}
        folded = fold_log(index_root, catalog.products, fingerprint, database_url=database_url)
    except ChangeLogError as exc:
        raise CommandError(f"cannot read the live catalogue's changes: {exc}") from None
    if folded.changes:
        print(f"folded {folded.changes} live catalogue changes (up to {folded.sequence})", file=sys.stderr)
    return Catalog(folded.products, catalog.skipped, catalog.source), folded.sequence, folded.vectors


def _compact(args: argparse.Namespace) -> int:
    from aisle.index.build import BuildOptions, build_version
    from aisle.index.catalog import Catalog
    from aisle.index.changes import ChangeLogError, fold_log
    from aisle.index.items import ItemTable
    from aisle.index.live import base_sequence
    from aisle.index.manifest import IndexValidationError, read_manifest, require_listed
    from aisle.index.versions import VersionError, VersionStore

    started = time.perf_counter()
    settings = load_settings(AisleSettings, index_dir=args.index, model=args.model)
    try:
        path = VersionStore(settings.index_dir).current_path().resolve()
        manifest = read_manifest(path)
        items = ItemTable.read(require_listed(path, manifest, manifest["items"]))
    except (VersionError, IndexValidationError, OSError, KeyError) as exc:
        raise CommandError(f"cannot read the current version under {settings.index_dir}: {exc}") from None
    encoder = load_encoder(settings)
    products = [items.product(row) for row in range(len(items))]
    try:
        folded = fold_log(
            settings.index_dir,
            products,
            encoder.fingerprint,
            after=base_sequence(manifest),
            database_url=settings.database_url,
        )
    except ChangeLogError as exc:
        raise CommandError(f"cannot read the live catalogue's changes: {exc}") from None
    if not folded.changes:
        print(f"nothing to fold: {path.name} includes every live change (up to {folded.sequence})")
        return 0
    # The folded version keeps the current one's index settings (a shop that tuned them keeps them).
    built = manifest["spaces"]["text"]["index"]
    tuned = {name: built[name] for name in ("hnsw_m", "ef_construction", "ef_search", "nprobe") if name in built}
    options = BuildOptions(
        index_type=built.get("type") if built.get("type") != "flat" else None,
        show_progress=not args.no_progress,
        keep_versions=args.keep,
        **tuned,
    )
    try:
        report = build_version(
            Catalog(folded.products),
            settings.index_dir,
            encoder,
            options,
            live_sequence=folded.sequence,
            known_vectors=folded.vectors,
        )
    except VersionError as exc:
        raise CommandError(str(exc)) from None
    except (ValueError, OSError) as exc:
        raise CommandError(f"cannot build the index under {settings.index_dir}: {exc}") from None
    print(
        f"published {report.version}: {path.name} + {folded.changes} live changes (up to {folded.sequence}), "
        f"{report.items} items ({report.encoded} encoded), in {time.perf_counter() - started:.2f} s"
    )
    return 0


def _check_writable(root: Path) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CommandError(f"cannot build the index under {root}: {exc}") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise CommandError(f"cannot build the index under {root}: the directory is not writable")


def _ray_build(args: argparse.Namespace, settings: AisleSettings) -> RayBuild:
    """The Ray side of ``--ray``: actors open the model export that ``load_encoder`` just made."""
    from functools import partial

    from aisle.embed import create_encoder
    from aisle.index.distributed import RayBuild, check_reachable

    address = None if args.ray == LOCAL_RAY else args.ray
    if address is not None:  # before minutes of work, not after
        try:
            check_reachable(address)
        except ConnectionError as exc:
            raise CommandError(f"cannot reach the Ray cluster at {address}: {exc}") from None
    return RayBuild(
        address=address,
        actors=args.ray_actors,
        encoder_factory=partial(create_encoder, settings.encoder_config(), export=False),
        threads_per_actor=settings.threads,
    )


def _versions(args: argparse.Namespace) -> int:
    from aisle.index.versions import VersionStore

    settings = load_settings(AisleSettings, index_dir=args.index)
    infos = VersionStore(settings.index_dir).list()
    if not infos:
        raise CommandError(f"no published versions under {settings.index_dir}; run `aisle build` first")
    if args.json:
        print(
            json.dumps(
                [
                    {"version": i.name, "created": i.created, "items": i.items, "model": i.model, "current": i.current}
                    for i in infos
                ]
            )
        )
        return 0
    for info in infos:
        marker = "*" if info.current else " "
        print(f"{marker} {info.name}  {info.created}  {info.items} items  {info.model}")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    """Points ``current`` at an earlier version once its files pass the checks ``aisle serve`` makes.

    A corrupt target is refused (exit 2) and ``current`` does not move: rolling back onto it
    would only break the next start.
    """
    from aisle.index.manifest import IndexValidationError, read_manifest, verify_files
    from aisle.index.versions import VersionError, VersionStore

    settings = load_settings(AisleSettings, index_dir=args.index)

    def verified(path: Path) -> None:
        verify_files(path, read_manifest(path))

    try:
        name = VersionStore(settings.index_dir).rollback(args.version, check=verified)
    except VersionError as exc:
        raise CommandError(str(exc)) from None
    except IndexValidationError as exc:
        raise CommandError(f"refusing to roll back to an invalid version, current is unchanged: {exc}") from None
    print(f"current version is now {name}; running services pick it up on POST /admin/reload")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    build = commands.add_parser("build", help="build and publish a new index version from a catalogue")
    build.add_argument("--catalog", type=Path, required=True, help="CSV, JSON Lines or Parquet file")
    build.add_argument("--out", type=Path, help="index root (default: settings index_dir)")
    build.add_argument(
        "--map",
        action="append",
        metavar="FIELD=COLUMN",
        help="map an Aisle field to your column, or to a template of columns: 'category={a} > {b}'",
    )
    build.add_argument("--skip-bad-rows", action="store_true", help="skip and report invalid rows")
    build.add_argument("--model", help="bundled:all-MiniLM-L6-v2 or a local sentence-transformers dir")
    build.add_argument(
        "--image-model",
        metavar="DIR",
        help="local CLIP, OpenCLIP or SigLIP dir (as transformers saves it): adds an image vector space "
        "(also the image_model setting / AISLE_IMAGE_MODEL)",
    )
    build.add_argument(
        "--fetch-image-urls",
        action="store_true",
        help="download http(s) product images (off by default; also image_fetch_urls)",
    )
    build.add_argument(
        "--index-type",
        choices=list(INDEX_TYPES),
        help="default: flat up to 20,000 products, else hnsw (hnsw-sq8 above --memory-budget-mb); "
        "ivf or ivf-pq on request (catalogues of many near-duplicate variants)",
    )
    build.add_argument(
        "--memory-budget-mb",
        type=positive_float,
        help="most memory the vector index may take; larger catalogues get hnsw-sq8",
    )
    build.add_argument("--hnsw-m", type=positive_int, help=f"HNSW graph degree (default {AnnParams.hnsw_m})")
    build.add_argument(
        "--ef-construction", type=positive_int, help=f"HNSW build beam (default {AnnParams.ef_construction})"
    )
    build.add_argument("--ef-search", type=positive_int, help=f"HNSW search beam (default {AnnParams.ef_search})")
    build.add_argument("--ivf-lists", type=positive_int, help="IVF cells (default about 4·√products)")
    build.add_argument("--nprobe", type=positive_int, help=f"IVF cells scanned per query (default {AnnParams.nprobe})")
    build.add_argument("--keep", type=positive_int, default=5, help="published versions to keep (default 5)")
    build.add_argument(
        "--ray",
        nargs="?",
        const=LOCAL_RAY,
        metavar="ADDRESS",
        help="encode (and fill IVF cells) on a Ray cluster; without ADDRESS a local one; same vectors as without",
    )
    build.add_argument("--ray-actors", type=positive_int, help="encoder actors with --ray (default: one per CPU)")
    build.add_argument("--no-progress", action="store_true", help="no progress bar")
    build.add_argument("--json", action="store_true", help="also print a JSON summary line")
    build.add_argument(
        "--supersede-changes",
        action="store_true",
        help="the catalogue already includes every change accepted through the API: do not fold the change log in",
    )
    add_common_options(build)
    build.set_defaults(handler=_build)

    compact = commands.add_parser(
        "compact", help="fold the live catalogue's changes into a new version (current version + change log)"
    )
    compact.add_argument("--index", type=Path, help="index root")
    compact.add_argument("--model", help="bundled:all-MiniLM-L6-v2 or a local sentence-transformers dir")
    compact.add_argument("--keep", type=positive_int, default=5, help="published versions to keep (default 5)")
    compact.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_common_options(compact)
    compact.set_defaults(handler=_compact)

    versions = commands.add_parser("versions", help="list published index versions (* = current)")
    versions.add_argument("--index", type=Path, help="index root")
    versions.add_argument("--json", action="store_true", help="print a JSON array")
    add_common_options(versions)
    versions.set_defaults(handler=_versions)

    rollback = commands.add_parser("rollback", help="make an earlier version current")
    rollback.add_argument("version", nargs="?", help="version name (default: the one before current)")
    rollback.add_argument("--index", type=Path, help="index root")
    add_common_options(rollback)
    rollback.set_defaults(handler=_rollback)
