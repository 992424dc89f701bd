"""One validated settings object; every field reads from ``NEUMETA_<FIELD>`` (see deploy/env.example)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service.constants import DEFAULT_KERNEL_PRECISION, MAX_SAMPLES, Backend, KernelPrecision

SHIPPED_CHECKPOINTS = Path(__file__).parent / "checkpoints"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NEUMETA_", extra="ignore")

    # Checkpoints: every *.safetensors in checkpoint_dir, plus explicit extra paths (comma list).
    checkpoint_dir: Path = SHIPPED_CHECKPOINTS
    checkpoints: Annotated[list[Path], NoDecode] = Field(default_factory=list)

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64)
    # Request heads (request line + headers) bigger than this are refused with 431 by `neumeta serve`.
    max_header_bytes: int = Field(16 * 1024, ge=1024, le=1024 * 1024)
    # A connection whose request head is not complete this long after it opened (or after the
    # previous response) is closed: a half-sent header must not hold a connection.
    header_timeout_s: float = Field(10.0, gt=0, le=300)

    backend: Backend = "auto"
    kernel_precision: KernelPrecision = Field(
        DEFAULT_KERNEL_PRECISION, description="dot precision of the Triton kernel (accumulation is always fp32)"
    )
    max_samples: int = Field(MAX_SAMPLES, ge=1, le=MAX_SAMPLES, description="upper bound for ?samples=K")

    redis_url: str | None = None
    cache_max_bytes: int = Field(256 * 1024 * 1024, ge=0, description="embedded LRU bound")
    cache_ttl_s: int = Field(7 * 24 * 3600, ge=1, description="TTL of Redis entries")
    lock_ttl_ms: int = Field(60_000, ge=100, description="cross-replica single-flight lock; >= generation timeout")
    redis_timeout_s: float = Field(0.5, gt=0, description="socket timeout for Redis calls")

    max_concurrent_generations: int = Field(2, ge=1)
    max_queued_generations: int = Field(16, ge=0)
    generation_timeout_s: float = Field(30.0, gt=0)
    retry_after_s: int = Field(2, ge=1)

    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list, repr=False)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = True

    @field_validator("checkpoints", "api_keys", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @model_validator(mode="after")
    def _checkpoints_exist(self) -> Settings:
        for path in self.checkpoints:
            if not path.is_file():
                raise ValueError(f"checkpoint {path} does not exist")
        if not self.checkpoints and not self.checkpoint_dir.is_dir():
            raise ValueError(f"checkpoint_dir {self.checkpoint_dir} is not a directory")
        return self

    def checkpoint_paths(self) -> list[Path]:
        if self.checkpoints:
            return list(self.checkpoints)
        return sorted(self.checkpoint_dir.glob("*.safetensors"))


@lru_cache
def get_settings() -> Settings:
    return Settings()
