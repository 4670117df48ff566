"""Root settings, shared by every command: where the index lives and which encoder builds it.

Values come, highest priority first, from explicit arguments (CLI flags), environment variables
``AISLE_*``, a YAML config file (``AISLE_CONFIG`` or ``--config``), then the defaults below.
Packages extend :class:`AisleSettings` with their own keys and list the subclass in the
``aisle.settings`` entry-point group, so that one config file serves every command and a key that
no installed package knows (a typo) is refused instead of silently ignored.
"""

from __future__ import annotations

import difflib
import os
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, YamlConfigSettingsSource

from aisle.embed.config import BUNDLED_MODEL, EncoderConfig, ImageEncoderConfig, default_cache_dir

CONFIG_ENV = "AISLE_CONFIG"
SETTINGS_GROUP = "aisle.settings"


class AisleSettings(BaseSettings):
    """Settings of the index build and of everything that reads an index."""

    model_config = SettingsConfigDict(env_prefix="AISLE_", extra="ignore", protected_namespaces=())

    index_dir: Path = Field(Path("aisle-index"), description="Root of the published index versions.")
    model: str = Field(
        BUNDLED_MODEL, description="Text model: the bundled MiniLM or a local sentence-transformers dir."
    )
    encoder_backend: Literal["onnx-int8", "onnx-fp32", "sentence-transformers"] = "onnx-int8"
    image_model: str | None = Field(
        None,
        description="Local CLIP-style model dir (CLIP, OpenCLIP or SigLIP as transformers saves it); "
        "None: pictures give colours and duplicate groups, no image vectors.",
    )
    image_backend: Literal["onnx-int8", "onnx-fp32"] = "onnx-int8"
    image_fetch_urls: bool = Field(
        False, description="Download http(s) product images at build time (off: URLs are counted, not fetched)."
    )
    image_fetch_timeout_s: float = Field(10.0, gt=0, le=600, description="Timeout of one image download.")
    database_url: str | None = Field(
        None,
        description="postgresql://... keeps what replicas share in PostgreSQL (events, live catalogue changes, "
        "attribution, experiments, the query log); unset: embedded SQLite files.",
    )
    threads: int = Field(1, ge=1, le=64, description="Encoder threads per process; one is fastest per worker.")
    cache_dir: Path = Field(default_factory=default_cache_dir, description="Cache of exported ONNX models.")
    query_prefix: str = ""
    document_prefix: str = ""
    columns: dict[str, str] = Field(
        default_factory=dict, description="Catalogue column map: aisle field → shop column."
    )
    fields: dict[str, list[str] | str] = Field(
        default_factory=dict,
        description="Catalogue field roles over the inferred ones: field → [searchable(:weight), filterable, "
        "facetable, sortable, public | private] (the roles named replace the inferred ones).",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get(CONFIG_ENV)
        if config_file:
            if not Path(config_file).is_file():
                raise FileNotFoundError(f"{CONFIG_ENV} names a missing config file: {config_file}")
            sources.append(_CheckedYamlSource(settings_cls, yaml_file=config_file))
        return tuple(sources)

    def encoder_config(self) -> EncoderConfig:
        return EncoderConfig(
            model=self.model,
            backend=self.encoder_backend,
            threads=self.threads,
            cache_dir=self.cache_dir,
            query_prefix=self.query_prefix,
            document_prefix=self.document_prefix,
        )

    def image_encoder_config(self) -> ImageEncoderConfig:
        return ImageEncoderConfig(
            model=self.image_model, backend=self.image_backend, threads=self.threads, cache_dir=self.cache_dir
        )


SettingsT = TypeVar("SettingsT", bound=AisleSettings)


def with_overrides(settings_cls: type[SettingsT], **overrides: Any) -> SettingsT:
    """Settings with the CLI's explicit values (those not None) on top."""
    return settings_cls(**{key: value for key, value in overrides.items() if value is not None})


@cache
def known_setting_names() -> frozenset[str]:
    """Every key a config file may hold: the fields of the root settings and of each subclass
    an installed package lists in the ``aisle.settings`` entry-point group."""
    names = set(AisleSettings.model_fields)
    for entry in entry_points(group=SETTINGS_GROUP):
        try:
            names |= set(entry.load().model_fields)
        except ImportError:  # a partial install: its keys are not known, and not needed
            continue
    return frozenset(names)


class _CheckedYamlSource(YamlConfigSettingsSource):
    """The YAML config file, with keys that no settings class knows refused (naming them)."""

    def __init__(self, settings_cls: type[BaseSettings], yaml_file: str) -> None:
        super().__init__(settings_cls, yaml_file=yaml_file)
        if not isinstance(self.yaml_data, dict):
            raise ValueError(f"config file {yaml_file} must be a mapping of setting names to values")
        known = known_setting_names() | set(settings_cls.model_fields)
        unknown = sorted(str(key) for key in self.yaml_data if key not in known)
        if unknown:
            hints = []
            for key in unknown:
                close = difflib.get_close_matches(key, known, n=1)
                hints.append(f"'{key}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
            raise ValueError(f"config file {yaml_file}: unknown setting {', '.join(hints)}")
