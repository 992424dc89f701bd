"""The blob cache: embedded LRU -> Redis -> single-flight generation. Redis trouble never fails a call.

Use from the app (one instance per process, opened and closed by the lifespan)::

    cache = BlobCache(settings, metrics)          # no I/O yet; Redis only if settings.redis_url
    await cache.ping()                            # optional at start-up: logs and flags a dead Redis

    key = cache_key(GENERATOR_VERSION, ckpt_sha, backend, arch, width, dtype, samples)
    blob, x_cache = await cache.get_or_create(key, make_onnx)   # make_onnx: async () -> CachedBlob
    # blob.data, blob.sha256 (hashed once, when it was made); x_cache is "hit" | "miss" | "coalesced"

    await cache.ping()                            # /readyz: live PING of the Redis tier, if any
    cache.status()                                # the whole cache: "ok" | "degraded" (Redis down), no I/O
    cache.redis_status()                          # the Redis tier: "ok" | "degraded" | "disabled"
    await cache.aclose()                          # lifespan shutdown

While Redis is unreachable every call still succeeds (memory tier + ``create``), ``status()`` is
"degraded", and calls skip Redis except one PING probe a second, which flips it back to "ok".

``create`` runs at most once per key at a time in this process (callers that join it get
"coalesced"), and across replicas sharing a Redis a ``SET NX PX`` lock makes the others wait for
the holder's blob ("coalesced") instead of generating it again; if the holder dies its lock expires
and a waiter takes over, and no waiter waits longer than one generation timeout in all (then it
generates without the lock), so a stuck holder cannot push a request past the clients' timeouts.
The lock only saves duplicate work: outputs are deterministic, so a rare double generation is
harmless. An exception from ``create`` reaches every caller waiting on it and nothing is cached.
``create`` should do its heavy work off the event loop (``run_in_executor``).

Metrics: ``cache_events{tier="memory",event=hit|miss|coalesced}`` (coalesced = joined an in-process
flight), ``{tier="redis",event=hit|miss|coalesced|store|corrupt|error}`` (coalesced = another
replica generated it), and ``cache_degraded``.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Literal

from service.cache.entry import CachedBlob
from service.cache.memory import MemoryLRU
from service.cache.redis_tier import RedisTier
from service.cache.singleflight import SingleFlight
from service.metrics import Metrics
from service.settings import Settings

CacheStatus = Literal["hit", "miss", "coalesced"]
Create = Callable[[], Awaitable[CachedBlob]]

LOCK_ROUNDS = 3  # lock attempts before generating without one (holders that keep crashing)
POLL_FIRST_S = 0.005  # waiting on another replica: first sleep, grown x1.5 per poll ...
POLL_MAX_S = 0.1  # ... up to this


def cache_key(
    generator_version: str, checkpoint_sha: str, backend: str, arch: str, width: int, dtype: str, samples: int
) -> str:
    """The documented key: ``neumeta:{generator_version}:{checkpoint_sha[:16]}:{backend}:{arch}:{width}:{dtype}:{K}``"""
    return f"neumeta:{generator_version}:{checkpoint_sha[:16]}:{backend}:{arch}:{width}:{dtype}:{samples}"


def record_key(name: str) -> str:
    return f"neumeta-record:{name}"


def lock_key(key: str) -> str:
    # The whole key as a Redis Cluster hash tag: the lock lives in the same slot as the blob.
    return f"neumeta-lock:{{{key}}}"


class BlobCache:
    def __init__(self, settings: Settings, metrics: Metrics, *, redis_probe_interval_s: float = 1.0):
        self.memory: MemoryLRU[CachedBlob] = MemoryLRU(settings.cache_max_bytes)
        metrics.cache_memory_bytes.set_function(lambda: self.memory.nbytes)
        metrics.cache_memory_entries.set_function(lambda: len(self.memory))
        self.redis: RedisTier | None = None
        if settings.redis_url:
            self.redis = RedisTier(
                settings.redis_url, metrics, ttl_s=settings.cache_ttl_s,
                timeout_s=settings.redis_timeout_s, probe_interval_s=redis_probe_interval_s,
            )
        self.lock_ttl_ms = settings.lock_ttl_ms
        # A live holder finishes (or gives up, busy) within one generation timeout; waiting longer
        # means it died, and the rest of its lock's TTL would only run past the clients' timeouts.
        self.peer_wait_s = min(settings.lock_ttl_ms / 1000, settings.generation_timeout_s)
        self._metrics = metrics
        self._flights: SingleFlight[tuple[CachedBlob, CacheStatus]] = SingleFlight()

    # -- lookups --------------------------------------------------------------------------------

    async def get_or_create(self, key: str, create: Create) -> tuple[CachedBlob, CacheStatus]:
        blob = self._memory_get(key)
        if blob is not None:
            return blob, "hit"
        (blob, status), joined = await self._flights.run(key, lambda: self._fill(key, create))
        if joined:
            self._event("memory", "coalesced")
            return blob, "coalesced"
        return blob, status

    def _memory_get(self, key: str) -> CachedBlob | None:
        if not self.memory.enabled:
            return None
        blob = self.memory.get(key)
        self._event("memory", "miss" if blob is None else "hit")
        return blob

    # -- a miss in this process: one flight per key ---------------------------------------------

    async def _fill(self, key: str, create: Create) -> tuple[CachedBlob, CacheStatus]:
        if self.redis is None:
            return await self._create_and_store(key, create), "miss"
        blob = await self.redis.get(key)
        if blob is not None:
            self.memory.put(key, blob)
            return blob, "hit"
        lock, token = lock_key(key), secrets.token_hex(16)
        deadline = time.monotonic() + self.peer_wait_s  # for all the waiting below, not per round
        for _ in range(LOCK_ROUNDS):
            taken = await self.redis.acquire_lock(lock, token, self.lock_ttl_ms)
            if taken is None:  # Redis is down: just generate
                break
            if taken:
                try:
                    # The holder we may have waited on stores before releasing: look once more.
                    blob = await self.redis.get(key, record=False)
                    if blob is not None:
                        self.memory.put(key, blob)
                        self._event("redis", "coalesced")
                        return blob, "coalesced"
                    return await self._create_and_store(key, create), "miss"
                finally:
                    await self.redis.release_lock(lock, token)
            blob = await self._await_peer(key, lock, deadline)
            if blob is not None:
                self.memory.put(key, blob)
                self._event("redis", "coalesced")
                return blob, "coalesced"
            if time.monotonic() >= deadline:
                break  # the holder is stuck or dead: generate without the lock (a duplicate is harmless)
            # The lock went away without a blob (holder crashed or failed): try to take it over.
        return await self._create_and_store(key, create), "miss"

    async def _await_peer(self, key: str, lock: str, deadline: float) -> CachedBlob | None:
        """Poll for another replica's blob while its lock lives, until ``deadline`` (monotonic)."""
        assert self.redis is not None
        delay = POLL_FIRST_S
        while time.monotonic() < deadline:
            held = await self.redis.lock_held(lock)
            blob = await self.redis.get(key, record=False)  # after the lock check: holders store, then release
            if blob is not None or not held:  # not held: released, expired, or Redis down (None)
                return blob
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, POLL_MAX_S)
        return None

    async def _create_and_store(self, key: str, create: Create) -> CachedBlob:
        blob = await create()
        if not isinstance(blob, CachedBlob) or not isinstance(blob.data, bytes):
            raise TypeError(f"create() must return a CachedBlob of bytes, got {blob!r}")
        self.memory.put(key, blob)
        if self.redis is not None:
            await self.redis.set(key, blob)  # a failure is logged and counted, never raised
        return blob

    # -- records shared by replicas (no-ops without Redis) ---------------------------------------

    async def put_record(self, name: str, value: bytes) -> None:
        if self.redis is not None:
            await self.redis.put_record(record_key(name), value)

    async def get_record(self, name: str) -> bytes | None:
        return await self.redis.get_record(record_key(name)) if self.redis is not None else None

    # -- health and lifecycle -------------------------------------------------------------------

    def status(self) -> Literal["ok", "degraded"]:
        """The cache as a whole: the embedded tier always works, so only a configured Redis that is
        down degrades it (requests still succeed, generating instead)."""
        return "degraded" if self.redis_status() == "degraded" else "ok"

    def redis_status(self) -> Literal["ok", "degraded", "disabled"]:
        return "disabled" if self.redis is None else self.redis.status()

    async def ping(self) -> Literal["ok", "degraded", "disabled"]:
        """Probe Redis now (for /readyz and start-up) and return the Redis tier's status."""
        if self.redis is not None:
            await self.redis.ping()
        return self.redis_status()

    async def aclose(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()

    def _event(self, tier: str, event: str) -> None:
        self._metrics.cache_events.labels(tier=tier, event=event).inc()
