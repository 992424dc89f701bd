import asyncio

import pytest

from service.cache import CachedBlob
from service.cache.envelope import MAGIC, seal
from service.cache.redis_tier import RedisTier
from service.metrics import Metrics
from tests.fixtures.redis import free_port

pytestmark = pytest.mark.redis

BLOB = CachedBlob.of(bytes(range(256)) * 64)  # 16 KiB


def events(metrics: Metrics, event: str) -> float:
    return metrics.registry.get_sample_value("neumeta_cache_events_total", {"tier": "redis", "event": event}) or 0.0


def degraded_gauge(metrics: Metrics) -> float:
    return metrics.registry.get_sample_value("neumeta_cache_degraded")


@pytest.fixture
def metrics():
    return Metrics()


@pytest.fixture
async def tier(redis_server, metrics):
    t = RedisTier(redis_server.url, metrics, ttl_s=60, timeout_s=0.5, probe_interval_s=0.1)
    yield t
    await t.aclose()


async def test_round_trip_stores_a_sealed_value_with_ttl(tier, raw, metrics):
    assert await tier.get("k") is None
    assert await tier.set("k", BLOB)
    assert await tier.get("k") == BLOB
    stored = raw.get("k")
    assert stored == seal(BLOB.data) and stored.startswith(MAGIC) and stored.endswith(BLOB.data)
    assert 0 < raw.ttl("k") <= 60
    assert (events(metrics, "miss"), events(metrics, "hit"), events(metrics, "store")) == (1, 1, 1)
    assert tier.status() == "ok" and degraded_gauge(metrics) == 0


async def test_the_digest_travels_in_the_envelope_and_is_checked_not_trusted(tier, raw):
    await tier.set("k", CachedBlob(BLOB.data, "ab" * 32))  # a writer that got its digest wrong
    assert await tier.get("k") is None and raw.exists("k") == 0  # the read checks, never serves it
    await tier.set("k", BLOB)
    got = await tier.get("k")
    assert got == BLOB and got.sha256 == raw.get("k")[len(MAGIC) : len(MAGIC) + 32].hex()


@pytest.mark.parametrize(
    "damage",
    [
        lambda v: b"garbage",
        lambda v: v[: len(v) // 2],
        lambda v: v[:-1],
        lambda v: v[:-1] + bytes([v[-1] ^ 0x40]),
        lambda v: v[:20] + bytes([v[20] ^ 0x01]) + v[21:],
        lambda v: BLOB.data,  # an unsealed blob written by something else
    ],
    ids=["garbage", "half", "one-short", "flip-payload", "flip-digest", "unsealed"],
)
async def test_corrupt_value_is_deleted_counted_and_never_returned(tier, raw, metrics, damage):
    await tier.set("k", BLOB)
    raw.set("k", damage(raw.get("k")))
    assert await tier.get("k") is None
    assert raw.exists("k") == 0
    assert events(metrics, "corrupt") == 1 and events(metrics, "hit") == 0
    assert tier.status() == "ok"  # corruption is not an outage


async def test_lock_is_exclusive_and_released_only_by_its_owner(tier, raw):
    assert await tier.acquire_lock("lock", "mine", 5000) is True
    assert await tier.acquire_lock("lock", "theirs", 5000) is False
    assert await tier.lock_held("lock") is True
    assert 0 < raw.pttl("lock") <= 5000
    await tier.release_lock("lock", "theirs")  # not the owner: no effect
    assert raw.get("lock") == b"mine"
    await tier.release_lock("lock", "mine")
    assert await tier.lock_held("lock") is False
    assert await tier.acquire_lock("lock", "theirs", 5000) is True


async def test_lock_expires_by_itself(tier):
    assert await tier.acquire_lock("lock", "crashed", 100)
    await asyncio.sleep(0.15)
    assert await tier.acquire_lock("lock", "next", 100) is True


async def test_outage_degrades_then_recovers(tier, redis_server, metrics):
    await tier.set("k", BLOB)
    redis_server.stop()
    assert await tier.get("k") is None
    assert tier.status() == "degraded" and tier.degraded and degraded_gauge(metrics) == 1
    assert events(metrics, "error") == 1
    # While degraded, calls answer at once without touching Redis (no error per call).
    assert await tier.set("k2", BLOB) is False
    assert await tier.acquire_lock("lock", "t", 1000) is None
    assert await tier.lock_held("lock") is None
    await tier.release_lock("lock", "t")
    assert events(metrics, "error") == 1

    redis_server.start()  # comes back empty (no persistence)
    await asyncio.sleep(0.15)  # past the probe interval: the next call probes and recovers
    assert await tier.set("k", BLOB) is True
    assert tier.status() == "ok" and degraded_gauge(metrics) == 0
    assert await tier.get("k") == BLOB


async def test_explicit_ping_reports_health(tier, redis_server):
    assert await tier.ping() is True
    redis_server.stop()
    assert await tier.ping() is False and tier.status() == "degraded"
    redis_server.start()
    assert await tier.ping() is True and tier.status() == "ok"


async def test_unreachable_redis_from_the_start_is_a_miss_not_an_error():
    metrics = Metrics()
    tier = RedisTier(f"redis://127.0.0.1:{free_port()}/0", metrics, ttl_s=60, timeout_s=0.2)
    try:
        assert await tier.get("k") is None
        assert await tier.set("k", CachedBlob.of(b"x")) is False
        assert tier.status() == "degraded" and events(metrics, "error") == 1
    finally:
        await tier.aclose()
