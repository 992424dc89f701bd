import asyncio
import time

import pytest
from redis.crc import key_slot

from service.cache import BlobCache, CachedBlob, cache_key
from service.cache.blob_cache import POLL_FIRST_S, POLL_MAX_S, lock_key
from service.metrics import Metrics
from service.settings import Settings
from tests.waiting import async_wait_until

KEY = cache_key("g1", "ab" * 32, "torch", "resnet20", 48, "float32", 5)
BLOB = CachedBlob.of(b"onnx-bytes:" + bytes(range(256)) * 16)


def settings(redis_url: str | None = None, **overrides) -> Settings:
    return Settings(**{"redis_url": redis_url, "lock_ttl_ms": 300, "redis_timeout_s": 0.5, **overrides})


def event(metrics: Metrics, tier: str, name: str) -> float:
    return metrics.registry.get_sample_value("neumeta_cache_events_total", {"tier": tier, "event": name}) or 0.0


class Creator:
    """An async create() that counts its calls and takes ``delay`` seconds."""

    def __init__(self, blob: CachedBlob | bytes = BLOB, delay: float = 0.0):
        self.blob = blob if isinstance(blob, CachedBlob) else CachedBlob.of(blob)
        self.delay, self.calls = delay, 0

    async def __call__(self) -> CachedBlob:
        self.calls += 1
        await asyncio.sleep(self.delay)
        return self.blob


@pytest.fixture
async def caches():
    """Factory of BlobCaches (each one a "replica"), all closed at teardown."""
    made: list[BlobCache] = []

    def make(redis_url: str | None = None, metrics: Metrics | None = None, **overrides) -> BlobCache:
        cache = BlobCache(settings(redis_url, **overrides), metrics or Metrics(), redis_probe_interval_s=0.1)
        made.append(cache)
        return cache

    yield make
    for cache in made:
        await cache.aclose()


def polls_within(seconds: float) -> int:
    """The most lock checks a waiter can make before ``seconds`` have passed: it sleeps POLL_FIRST_S,
    then 1.5x longer each time up to POLL_MAX_S, between checks. Sleeps never end early, so a loaded
    machine only makes fewer; a bound on checks is one on waiting that no slow machine breaks."""
    polls, slept, delay = 1, 0.0, POLL_FIRST_S
    while slept + delay < seconds:
        slept, polls, delay = slept + delay, polls + 1, min(delay * 1.5, POLL_MAX_S)
    return polls


def spy_on_locks(cache: BlobCache, max_checks: int = 1_000) -> tuple[list[bool | None], list[bool | None]]:
    """(what each lock attempt got, what each check of another holder's lock saw), recorded as the
    cache runs against the real Redis; more than ``max_checks`` checks fail the test at once."""
    attempts: list[bool | None] = []
    checks: list[bool | None] = []
    acquire_lock, lock_held = cache.redis.acquire_lock, cache.redis.lock_held

    async def recorded_acquire(*args):
        attempts.append(await acquire_lock(*args))
        return attempts[-1]

    async def recorded_check(lock: str):
        checks.append(await lock_held(lock))
        assert len(checks) <= max_checks, f"still waiting after {len(checks)} lock checks"
        return checks[-1]

    cache.redis.acquire_lock, cache.redis.lock_held = recorded_acquire, recorded_check
    return attempts, checks


def test_cache_key_is_the_documented_scheme():
    sha = "0123456789abcdef" + "f" * 48
    assert cache_key("3", sha, "triton", "resnet20-last", 16, "int8", 1) == (
        "neumeta:3:0123456789abcdef:triton:resnet20-last:16:int8:1"
    )


def test_lock_shares_the_blob_key_cluster_slot():
    assert lock_key(KEY) != KEY and KEY in lock_key(KEY)
    assert key_slot(lock_key(KEY).encode()) == key_slot(KEY.encode())


# -- embedded only ---------------------------------------------------------------------------------


async def test_without_redis_miss_then_hit(caches):
    metrics = Metrics()
    cache = caches(metrics=metrics)
    create = Creator()
    # Embedded only: the cache works ("ok"); there is no Redis tier to probe.
    assert cache.status() == "ok" and cache.redis_status() == "disabled" and await cache.ping() == "disabled"
    assert await cache.get_or_create(KEY, create) == (BLOB, "miss")
    assert await cache.get_or_create(KEY, create) == (BLOB, "hit")
    assert create.calls == 1
    assert event(metrics, "memory", "hit") == 1


async def test_fifty_concurrent_misses_create_once(caches):
    metrics = Metrics()
    cache = caches(metrics=metrics)
    create = Creator(delay=0.05)
    results = await asyncio.gather(*(cache.get_or_create(KEY, create) for _ in range(50)))
    assert create.calls == 1
    assert all(blob == BLOB for blob, _ in results)
    statuses = [status for _, status in results]
    assert statuses.count("miss") == 1 and statuses.count("coalesced") == 49
    assert event(metrics, "memory", "coalesced") == 49


async def test_create_failure_reaches_all_waiters_and_is_not_cached(caches):
    cache = caches()
    calls = 0

    async def failing() -> CachedBlob:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.02)
        raise RuntimeError("export failed")

    results = await asyncio.gather(*(cache.get_or_create(KEY, failing) for _ in range(10)), return_exceptions=True)
    assert calls == 1 and all(isinstance(r, RuntimeError) for r in results)
    assert await cache.get_or_create(KEY, Creator()) == (BLOB, "miss")  # nothing cached: the next request retries


NOT_A_CACHED_BLOB = [b"bytes without their digest", CachedBlob("not bytes", "0" * 64)]  # type: ignore[arg-type]


@pytest.mark.parametrize("wrong", NOT_A_CACHED_BLOB)
async def test_create_must_return_a_cached_blob_of_bytes(caches, wrong):
    async def create() -> CachedBlob:
        return wrong

    with pytest.raises(TypeError, match="CachedBlob of bytes"):
        await caches().get_or_create(KEY, create)


# -- with Redis ------------------------------------------------------------------------------------


@pytest.mark.redis
async def test_redis_miss_then_hit_across_instances(caches, redis_server, raw):
    first, second = caches(redis_server.url), caches(redis_server.url)
    create = Creator()
    assert await first.get_or_create(KEY, create) == (BLOB, "miss")
    assert raw.exists(KEY) and not raw.exists(lock_key(KEY))  # stored, lock released
    assert await second.get_or_create(KEY, create) == (BLOB, "hit")  # from Redis ...
    assert second.memory.get(KEY) == BLOB  # ... promoted into memory
    assert create.calls == 1 and first.status() == "ok"


@pytest.mark.redis
async def test_memory_disabled_still_hits_redis(caches, redis_server):
    cache = caches(redis_server.url, cache_max_bytes=0)
    create = Creator()
    assert await cache.get_or_create(KEY, create) == (BLOB, "miss")
    assert await cache.get_or_create(KEY, create) == (BLOB, "hit")
    assert create.calls == 1 and len(cache.memory) == 0


@pytest.mark.redis
async def test_fifty_concurrent_misses_with_redis_create_once(caches, redis_server):
    cache = caches(redis_server.url)
    create = Creator(delay=0.05)
    results = await asyncio.gather(*(cache.get_or_create(KEY, create) for _ in range(50)))
    statuses = [status for _, status in results]
    assert create.calls == 1 and all(blob == BLOB for blob, _ in results)
    assert statuses.count("miss") == 1 and statuses.count("coalesced") == 49


@pytest.mark.redis
async def test_two_replicas_generate_once(caches, redis_server):
    metrics_a, metrics_b = Metrics(), Metrics()
    a, b = caches(redis_server.url, metrics_a), caches(redis_server.url, metrics_b)
    create = Creator(delay=0.1)  # shared counter: both replicas would call it
    results = await asyncio.gather(
        *(a.get_or_create(KEY, create) for _ in range(5)), *(b.get_or_create(KEY, create) for _ in range(5))
    )
    assert create.calls == 1
    assert all(blob == BLOB for blob, _ in results)
    statuses = [status for _, status in results]
    assert statuses.count("miss") == 1 and statuses.count("coalesced") == 9
    # One replica's leader waited on the other's lock and got the blob from Redis.
    assert event(metrics_a, "redis", "coalesced") + event(metrics_b, "redis", "coalesced") == 1


@pytest.mark.redis
async def test_crashed_lock_holder_is_taken_over_after_the_ttl(caches, redis_server, raw):
    raw.set(lock_key(KEY), "crashed-replica", px=300)  # never released
    # Our own lock TTL (the longest we would wait on a holder) is a minute: only the crashed
    # holder's expiry can end the wait early.
    cache = caches(redis_server.url, lock_ttl_ms=60_000)
    attempts, checks = spy_on_locks(cache, max_checks=polls_within(0.3) + 1)
    lock_at_create: list[bytes | None] = []

    async def create():
        lock_at_create.append(raw.get(lock_key(KEY)))
        return BLOB

    start = time.monotonic()
    assert await cache.get_or_create(KEY, create) == (BLOB, "miss")
    assert time.monotonic() - start >= 0.2  # it did wait for the crashed holder's lock
    # Checked while the lock lived, saw it expire, took it over and generated under its own lock.
    assert set(checks[:-1]) == {True} and checks[-1] is False
    assert attempts == [False, True] and lock_at_create[0] not in (None, b"crashed-replica")
    assert raw.exists(KEY) and not raw.exists(lock_key(KEY))


@pytest.mark.redis
async def test_a_stuck_holder_is_not_waited_on_past_the_generation_timeout(caches, redis_server, raw):
    raw.set(lock_key(KEY), "stuck-replica", px=600_000)  # alive enough to keep its lock, never storing
    cache = caches(redis_server.url, lock_ttl_ms=600_000, generation_timeout_s=0.3)
    # One generation timeout's worth of checks, not the lock's ten minutes of them.
    attempts, checks = spy_on_locks(cache, max_checks=polls_within(0.3))
    create = Creator()
    start = time.monotonic()
    assert await cache.get_or_create(KEY, create) == (BLOB, "miss")
    assert time.monotonic() - start >= 0.25  # it did wait, about one generation timeout
    assert attempts == [False] and set(checks) == {True}  # gave up on a live lock and generated without it
    assert create.calls == 1 and raw.exists(KEY) and raw.get(lock_key(KEY)) == b"stuck-replica"


@pytest.mark.redis
async def test_waiter_gets_the_holders_blob_as_soon_as_it_lands(caches, redis_server, raw):
    holder, waiter = caches(redis_server.url), caches(redis_server.url, lock_ttl_ms=600_000)
    raw.set(lock_key(KEY), "other-replica", px=600_000)  # a long lock: only the blob can end the wait
    _, checks = spy_on_locks(waiter)
    create = Creator(b"must not run")
    task = asyncio.create_task(waiter.get_or_create(KEY, create))
    await async_wait_until(lambda: len(checks) >= 1, "the waiter checks the other replica's lock")
    await holder.redis.set(KEY, BLOB)  # the other replica stores its result ...
    checks_before = len(checks)
    assert await task == (BLOB, "coalesced")
    assert len(checks) <= checks_before + 1 and create.calls == 0  # ... and the next check picks it up


@pytest.mark.redis
@pytest.mark.parametrize(
    "damage",
    [lambda v: b"\x00garbage", lambda v: v[: len(v) - 7], lambda v: v[:-3] + bytes([v[-3] ^ 0x10]) + v[-2:]],
    ids=["garbage", "truncated", "flipped"],
)
async def test_corrupt_redis_entry_is_regenerated_never_served(caches, redis_server, raw, damage):
    await caches(redis_server.url).get_or_create(KEY, Creator())
    raw.set(KEY, damage(raw.get(KEY)))
    metrics = Metrics()
    fresh = caches(redis_server.url, metrics)  # empty memory tier: must read Redis
    create = Creator()
    assert await fresh.get_or_create(KEY, create) == (BLOB, "miss")
    assert create.calls == 1 and event(metrics, "redis", "corrupt") == 1
    assert await caches(redis_server.url).get_or_create(KEY, create) == (BLOB, "hit")  # the good copy replaced it
    assert create.calls == 1


@pytest.mark.redis
async def test_redis_outage_never_fails_requests_and_recovers(caches, redis_server, raw):
    metrics = Metrics()
    cache = caches(redis_server.url, metrics)
    assert await cache.get_or_create(KEY, Creator()) == (BLOB, "miss")
    redis_server.stop()
    other = KEY.replace(":48:", ":32:")
    create = Creator(b"width-32")
    assert await cache.get_or_create(other, create) == (CachedBlob.of(b"width-32"), "miss")
    assert await cache.get_or_create(KEY, Creator()) == (BLOB, "hit")  # memory tier still serves
    assert cache.status() == "degraded" == cache.redis_status() and await cache.ping() == "degraded"
    assert metrics.registry.get_sample_value("neumeta_cache_degraded") == 1
    assert event(metrics, "redis", "error") >= 1

    redis_server.start()
    await asyncio.sleep(0.15)  # past the probe interval
    third = KEY.replace(":48:", ":16:")
    assert await cache.get_or_create(third, Creator(b"width-16")) == (CachedBlob.of(b"width-16"), "miss")
    assert cache.status() == "ok" == cache.redis_status() and await cache.ping() == "ok"
    assert metrics.registry.get_sample_value("neumeta_cache_degraded") == 0
    assert raw.exists(third)  # stored in Redis again
    assert not raw.exists(lock_key(third))  # released although the restart flushed the Lua script cache


@pytest.mark.redis
async def test_redis_dying_while_waiting_on_a_lock_falls_back_to_generating(caches, redis_server, raw):
    raw.set(lock_key(KEY), "other-replica", px=5000)
    cache = caches(redis_server.url)
    create = Creator()
    task = asyncio.create_task(cache.get_or_create(KEY, create))
    await asyncio.sleep(0.05)
    redis_server.stop()
    assert await asyncio.wait_for(task, 2.0) == (BLOB, "miss")
    assert create.calls == 1 and cache.status() == "degraded"
