"""Second tier: Redis, shared by replicas. An optimisation only: it never fails a request.

Every Redis call goes through ``_call``: a ``RedisError``/``OSError``/timeout is logged, counted
(``cache_events{tier="redis",event="error"}``), marks the tier degraded (``cache_degraded=1``) and
the call answers like a miss / no-op. While degraded, calls skip Redis entirely (no per-request
timeouts) except one cheap PING probe at most every ``probe_interval_s``; the first probe that
answers clears the degraded state. Values are sealed envelopes (``envelope.py``), checked on read.

A Redis that answers but refuses writes (``OOM`` at ``maxmemory`` with ``noeviction``, ``READONLY``
on a replica) is degraded too, although PING works: nothing generated is shared any more. Reads
go on; the state clears on the next write that succeeds, and ``ping`` (``/readyz``) probes with a
small expiring write, so a full Redis is reported before a generation trips over it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

from service.cache.entry import CachedBlob
from service.cache.envelope import CorruptEntry, open_sealed, seal
from service.metrics import Metrics

log = logging.getLogger(__name__)

T = TypeVar("T")

# asyncio.TimeoutError is the builtin TimeoutError (an OSError) on 3.11+, not on 3.10.
FAILURES = (RedisError, OSError, asyncio.TimeoutError)
HEALTH_CHECK_INTERVAL_S = 10  # PING a pooled connection idle this long before reusing it
WRITES = frozenset({"set", "lock", "probe"})  # ops whose refusal (OOM, READONLY) means "cannot share"
PROBE_KEY = "neumeta:probe"  # shared by replicas; tiny and expiring
PROBE_TTL_MS = 10_000

# Delete the lock only if we still own it (it may have expired and been taken by another replica).
RELEASE_LOCK_LUA = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


class _Down:
    """Sentinel: the call did not reach Redis (degraded, or it just failed)."""


DOWN = _Down()


class RedisTier:
    def __init__(
        self, url: str, metrics: Metrics, *, ttl_s: int, timeout_s: float, probe_interval_s: float = 1.0
    ):
        # One retry without backoff, on connection errors only: it replaces a pooled connection that
        # went stale while Redis restarted, without multiplying timeouts while Redis is unreachable.
        self._client = Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            health_check_interval=HEALTH_CHECK_INTERVAL_S,
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
        self._release_lock = self._client.register_script(RELEASE_LOCK_LUA)
        self._metrics = metrics
        self.ttl_s = ttl_s
        self.probe_interval_s = probe_interval_s
        self._degraded = False  # unreachable (or failing reads): calls skip Redis
        self._writes_refused = False  # reachable but refusing writes: reads go on
        self._next_probe = 0.0
        self._probing = False
        metrics.cache_degraded.set(0)

    @property
    def degraded(self) -> bool:
        return self._degraded or self._writes_refused

    def status(self) -> Literal["ok", "degraded"]:
        return "degraded" if self.degraded else "ok"

    def _publish_state(self) -> None:
        self._metrics.cache_degraded.set(1 if self.degraded else 0)

    # -- health -------------------------------------------------------------------------------

    async def ping(self) -> bool:
        """Probe Redis now (ignores the probe interval); updates and returns the health state."""
        self._probing = True
        try:
            await self._client.ping()
        except FAILURES as exc:
            self._fail("ping", exc)
            return False
        finally:
            self._probing = False
        if self._degraded:
            log.info("redis cache reachable again")
            self._degraded = False
        # PING says nothing about writes: a full (OOM) or read-only Redis answers it happily.
        try:
            await self._client.set(PROBE_KEY, b"1", px=PROBE_TTL_MS)
        except FAILURES as exc:
            self._fail("probe", exc)
            return not self._degraded
        self._writes_ok()
        return True

    def _writes_ok(self) -> None:
        if self._writes_refused:
            log.info("redis cache accepts writes again")
            self._writes_refused = False
        self._publish_state()

    async def _usable(self) -> bool:
        if not self._degraded:
            return True
        if self._probing or time.monotonic() < self._next_probe:
            return False
        return await self.ping()

    def _fail(self, op: str, exc: BaseException) -> None:
        self._metrics.cache_events.labels(tier="redis", event="error").inc()
        if op in WRITES and isinstance(exc, ResponseError):  # the server answered: it refuses writes
            if not self._writes_refused:
                log.warning("redis cache degraded (%s refused: %s); blobs are no longer shared", op, exc)
            self._writes_refused = True
            self._publish_state()
            return
        if not self._degraded:
            log.warning("redis cache degraded (%s failed: %s: %s); serving without it", op, type(exc).__name__, exc)
        self._degraded = True
        self._next_probe = time.monotonic() + self.probe_interval_s
        self._publish_state()

    async def _call(self, op: str, make: Callable[[], Awaitable[T]]) -> T | _Down:
        if not await self._usable():
            return DOWN
        try:
            return await make()
        except FAILURES as exc:
            self._fail(op, exc)
            return DOWN

    # -- blobs --------------------------------------------------------------------------------

    async def get(self, key: str, *, record: bool = True) -> CachedBlob | None:
        """The intact blob stored under ``key`` with its checked digest, or None (absent, corrupt, or Redis down).

        ``record`` counts the answer as a redis hit/miss; polls and re-checks pass False.
        """
        value = await self._call("get", lambda: self._client.get(key))
        if isinstance(value, _Down):
            return None
        if value is None:
            if record:
                self._metrics.cache_events.labels(tier="redis", event="miss").inc()
            return None
        try:
            if not isinstance(value, bytes):  # the client is built without decode_responses
                raise CorruptEntry(f"unexpected {type(value).__name__} from Redis")
            payload, digest = open_sealed(value)
        except CorruptEntry as exc:
            # Never serve it: drop it so the next writer replaces it with a good copy.
            log.warning("corrupt redis cache entry %s deleted: %s", key, exc)
            self._metrics.cache_events.labels(tier="redis", event="corrupt").inc()
            await self._call("delete", lambda: self._client.delete(key))
            return None
        if record:
            self._metrics.cache_events.labels(tier="redis", event="hit").inc()
        return CachedBlob(payload, digest)

    async def set(self, key: str, blob: CachedBlob) -> bool:
        value = seal(blob.data, blob.sha256)
        stored = await self._call("set", lambda: self._client.set(key, value, ex=self.ttl_s))
        if stored is True:
            self._metrics.cache_events.labels(tier="redis", event="store").inc()
            self._writes_ok()
            return True
        return False

    # -- small shared records (the digest -> recipe index of /blobs) ---------------------------

    async def put_record(self, key: str, value: bytes) -> None:
        """Store a small record (not a blob: no envelope, no store event); failures only degrade."""
        await self._call("set", lambda: self._client.set(key, value, ex=self.ttl_s))

    async def get_record(self, key: str) -> bytes | None:
        value = await self._call("get", lambda: self._client.get(key))
        return value if isinstance(value, bytes) else None

    # -- cross-replica single-flight lock -------------------------------------------------------

    async def acquire_lock(self, lock_key: str, token: str, ttl_ms: int) -> bool | None:
        """True if we took the lock, False if another holder has it, None if Redis is down."""
        taken = await self._call("lock", lambda: self._client.set(lock_key, token, nx=True, px=ttl_ms))
        if isinstance(taken, _Down):
            return None
        return bool(taken)

    async def lock_held(self, lock_key: str) -> bool | None:
        """Whether anyone holds the lock; None if Redis is down."""
        held = await self._call("lock", lambda: self._client.exists(lock_key))
        return None if isinstance(held, _Down) else bool(held)

    async def release_lock(self, lock_key: str, token: str) -> None:
        await self._call("unlock", lambda: self._release_lock(keys=[lock_key], args=[token]))

    async def aclose(self) -> None:
        try:
            await self._client.aclose()
        except FAILURES as exc:  # closing a pool whose server is gone must not fail shutdown
            log.debug("redis close: %s", exc)
