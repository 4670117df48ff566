"""Service settings (pydantic-settings): every ``AISLE_*`` variable and config-file key."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from index.settings import AisleSettings


class ServiceSettings(AisleSettings):
    """Settings of ``aisle serve``; the shared index/model settings are inherited."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    api_key: str | None = Field(None, description="Required in X-API-Key on write and admin routes when set.")
    data_dir: Path = Field(Path("aisle-data"), description="Where events and profiles are stored.")
    verify_checksums: bool = Field(True, description="Check every file's sha256 when loading a version.")
    watch_interval_s: float = Field(2.0, ge=0, description="How often to check the current pointer; 0 disables.")
    # Request limits.
    max_body_bytes: int = Field(1_000_000, ge=1024)
    max_query_chars: int = Field(512, ge=1)
    max_k: int = Field(100, ge=1)
    max_events_per_batch: int = Field(1000, ge=1)
    request_timeout_ms: float = Field(2000, gt=0, description="Per-request time budget.")
    # Retrieval.
    candidates: int = Field(200, ge=10, le=2000, description="Candidates retrieved before reranking.")
