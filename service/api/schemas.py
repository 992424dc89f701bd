"""Response bodies of the JSON endpoints (they also document the API in /docs)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class ErrorBody(BaseModel):
    code: str
    message: str
    request_id: str


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class LoadedCheckpoint(BaseModel):
    arch: str
    checkpoint: str  # first 12 hex of the checkpoint's SHA-256


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    checkpoints: list[LoadedCheckpoint]
    cache: Literal["ok", "degraded"]  # degraded: Redis configured but down (requests still succeed)
    redis: Literal["ok", "degraded", "disabled"]  # disabled: no NEUMETA_REDIS_URL, embedded cache only
    backend: str
