"""Fixtures shared by the cache tests."""

import pytest
import redis


@pytest.fixture
def raw(redis_server):
    """A plain synchronous client of the test's redis-server, to read and plant keys behind the cache's back."""
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()
