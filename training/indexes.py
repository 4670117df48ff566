"""The index an evaluation runs on: an existing index root, or one built for the data set.

Built indexes live under ``<cache>/eval-indexes/<data set>/<model fingerprint>/`` and are
ordinary index roots made by ``aisle.index.build.build_version`` (the code ``aisle build`` runs), so a
second evaluation with the same model re-uses every vector and only re-publishes.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from aisle.embed.base import Encoder
from aisle.index.catalog import Catalog
from aisle.index.loaded import LoadedIndex
from aisle.settings import AisleSettings

log = logging.getLogger(__name__)


@dataclass
class EvalIndex:
    """A loaded version, the encoder that queries it, and its index root."""

    index: LoadedIndex
    encoder: Encoder
    root: Path


def create_encoder_for(settings: AisleSettings, model: str | None = None) -> Encoder:
    """The text encoder of ``settings`` (or of ``model``), its ONNX export prepared if needed."""
    from dataclasses import replace

    from aisle.embed import create_encoder, prepare_model

    config = settings.encoder_config()
    if model is not None:
        config = replace(config, model=model)
    if config.backend != "sentence-transformers":
        prepare_model(config)
    return create_encoder(config)


def eval_index_root(settings: AisleSettings, data_name: str, encoder: Encoder) -> Path:
    """Where the evaluation index of ``data_name`` built with ``encoder`` lives."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", data_name).strip("_") or "data"
    model = hashlib.sha256(encoder.fingerprint.encode()).hexdigest()[:16]
    return Path(settings.cache_dir).parent / "eval-indexes" / safe / model


def build_eval_index(
    catalog: Catalog,
    data_name: str,
    encoder: Encoder,
    settings: AisleSettings,
    *,
    root: Path | None = None,
    show_progress: bool = True,
) -> EvalIndex:
    """Builds (re-using unchanged vectors) and loads the evaluation index of ``catalog``."""
    from aisle.index.build import BuildOptions, build_version

    root = root or eval_index_root(settings, data_name, encoder)
    report = build_version(catalog, root, encoder, BuildOptions(show_progress=show_progress, keep_versions=2))
    log.info(
        "evaluation index %s: %d items (%d encoded) in %.1f s",
        report.version,
        report.items,
        report.encoded,
        report.seconds,
    )
    return EvalIndex(LoadedIndex.load(report.path, expected_fingerprint=encoder.fingerprint), encoder, root)


def load_eval_index(root: Path, encoder: Encoder, catalog: Catalog | None = None) -> EvalIndex:
    """The current version of an existing index root, checked against the data set's items.

    Raises:
        ValueError: the index lacks products of the data set (it was built from another
            catalogue) or was built with another model.
    """
    from aisle.index.versions import VersionStore

    index = LoadedIndex.load(VersionStore(root).current_path(), expected_fingerprint=encoder.fingerprint)
    if catalog is not None:
        missing = [p.id for p in catalog.products if p.id not in index.items.row_of]
        if missing:
            raise ValueError(
                f"the index at {root} lacks {len(missing)} product(s) of the evaluation data, e.g. "
                f"{missing[:3]}: build it from the evaluation catalogue"
            )
    return EvalIndex(index, encoder, root)
