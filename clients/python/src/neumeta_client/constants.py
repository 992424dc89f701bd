"""Defaults and environment overrides, read in one place.

Environment variables are read when a client is built (not at import), so tests and long-lived
processes see changes.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx

ENV_CACHE_DIR = "NEUMETA_CACHE_DIR"
ENV_OFFLINE = "NEUMETA_OFFLINE"
ENV_API_KEY = "NEUMETA_API_KEY"
ENV_SERVER = "NEUMETA_SERVER"

DEFAULT_CACHE_DIR = Path("~/.cache/neumeta")

# Connect fails fast (a dead host should not eat the retry budget); reads may wait for a cold
# generation on a CPU server, which takes seconds.
DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=60.0, write=30.0, pool=10.0)
DEFAULT_LOCK_TIMEOUT_S = 120.0

DTYPES = ("float32", "float16", "int8", "int8-weights")  # the service's dtype values

_TRUE = {"1", "true", "yes", "on"}


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def cache_dir_from_env(explicit: str | os.PathLike[str] | None = None) -> Path:
    raw = explicit if explicit is not None else os.environ.get(ENV_CACHE_DIR) or DEFAULT_CACHE_DIR
    return Path(raw).expanduser()
