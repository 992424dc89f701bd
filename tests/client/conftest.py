"""Fixtures for client tests: a faulty server with a random "model" body, and fast-retrying clients."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from neumeta_client import AsyncClient, Client, RetryPolicy

from tests.client.faulty_server import FaultyServer

BODY_SIZE = 300_000  # a few HTTP chunks; big enough to drop mid-body, small enough to stay fast

# Short backoff so retry tests take milliseconds; attempts are what the tests count.
FAST_RETRY = RetryPolicy(retries=3, backoff_base_s=0.01, backoff_max_s=0.05, total_s=30.0)


@pytest.fixture
def model_body() -> bytes:
    return os.urandom(BODY_SIZE)


@pytest.fixture
def faulty(model_body):
    with FaultyServer(model_body) as server:
        yield server


@pytest.fixture
def cache_dir(tmp_path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def make_client(faulty, cache_dir):
    clients: list[Client] = []

    def make(**kwargs) -> Client:
        kwargs = {"cache_dir": cache_dir, "retries": FAST_RETRY, "timeout": (2.0, 2.0), **kwargs}
        client = Client(kwargs.pop("base_url", faulty.url), **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def make_async_client(faulty, cache_dir):
    def make(**kwargs) -> AsyncClient:
        kwargs = {"cache_dir": cache_dir, "retries": FAST_RETRY, "timeout": (2.0, 2.0), **kwargs}
        return AsyncClient(kwargs.pop("base_url", faulty.url), **kwargs)

    return make


def assert_blobs_verified(cache_dir: Path) -> list[Path]:
    """The cache invariant: every file in blobs/ is complete and hashes to its own name."""
    blobs = sorted((cache_dir / "blobs").glob("*")) if (cache_dir / "blobs").exists() else []
    for path in blobs:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name, f"corrupt or partial blob {path}"
    return blobs
