"""Settings shared by every command: where the index lives and which encoder builds it.

Values come, highest priority first, from explicit arguments (CLI flags), environment variables
``AISLE_*``, a YAML config file (``AISLE_CONFIG`` or ``--config``), then the defaults below.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from aisle.embed.config import BUNDLED_MODEL, EncoderConfig, default_cache_dir

CONFIG_ENV = "AISLE_CONFIG"


class AisleSettings(BaseSettings):
    """Settings of the index build and of everything that reads an index."""

    model_config = SettingsConfigDict(env_prefix="AISLE_", extra="ignore", protected_namespaces=())

    index_dir: Path = Field(Path("aisle-index"), description="Root of the published index versions.")
    model: str = Field(
        BUNDLED_MODEL, description="Text model: the bundled MiniLM or a local sentence-transformers dir."
    )
    encoder_backend: Literal["onnx-int8", "onnx-fp32", "sentence-transformers"] = "onnx-int8"
    image_model: str | None = Field(None, description="Local CLIP-style model dir; None ignores images.")
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
            from pydantic_settings import YamlConfigSettingsSource

            if not Path(config_file).is_file():
                raise FileNotFoundError(f"{CONFIG_ENV} names a missing config file: {config_file}")
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config_file))
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


def with_overrides(settings_cls: type[AisleSettings], **overrides: Any) -> AisleSettings:
    """Settings with the CLI's explicit values (those not None) on top."""
    return settings_cls(**{key: value for key, value in overrides.items() if value is not None})
