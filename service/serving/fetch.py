"""A model's bytes from the cache, generated on a miss, with the digest that came with them.

Shared by a model's two URLs (``/model?...`` and ``/blobs/sha256/<hex>``). A miss runs the injected
generator once on the worker pool; the digest it computed travels with the bytes through both cache
tiers (``CachedBlob``) and is recorded so that the content-addressed URL can find the model again.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from service.cache import CachedBlob, CacheStatus
from service.errors import Busy
from service.serving.digests import Recipe
from service.serving.pipeline import Generator
from service.serving.request import ModelRequest

if TYPE_CHECKING:
    from service.api.deps import Service


async def fetch(service: Service, request: ModelRequest, generate: Generator) -> tuple[CachedBlob, CacheStatus]:
    """``(blob with its sha256, X-Cache)`` of ``request``, generated with ``generate`` on a cache miss.

    The request waits at most ``generation_timeout_s``; the generation itself (a single-flight task
    of the cache, shielded from its callers) runs on and fills the cache, so the ``busy`` answer's
    Retry-After points at a retry that finds the model instead of starting it again.
    """
    key = request.cache_key

    def run() -> CachedBlob:  # on a generation worker thread; counted once per real generation
        started = time.perf_counter()
        model = generate(request)
        labels = (request.arch, request.backend)
        service.metrics.generation_seconds.labels(*labels).observe(time.perf_counter() - started)
        service.metrics.generations.labels(*labels).inc()
        return CachedBlob(model.data, model.sha256)

    async def create() -> CachedBlob:
        return await service.pool.run(run, key)

    timeout_s = service.settings.generation_timeout_s
    try:
        blob, cache_status = await asyncio.wait_for(service.cache.get_or_create(key, create), timeout_s)
    except TimeoutError:
        retry_after = service.pool.retry_after_s(key)
        raise Busy(f"the model was not ready within {timeout_s:g}s; it is still being generated and will be "
                   f"cached: retry in {retry_after}s", retry_after=retry_after) from None
    first_time = service.digests.known(key) != blob.sha256
    service.digests.remember(key, blob.sha256, request.recipe)
    if first_time:  # let every replica (and worker) answer /blobs for it
        await service.cache.put_record(digest_record(blob.sha256), request.recipe.to_json(key))
    return blob, cache_status


def digest_record(digest: str) -> str:
    return f"sha256:{digest}"


async def recipe_for(service: Service, digest: str) -> tuple[str, Recipe] | None:
    """``(cache key, recipe)`` of a digest served here, or by any replica sharing this Redis."""
    found = service.digests.recipe_of(digest)
    if found is None:
        record = await service.cache.get_record(digest_record(digest))
        found = Recipe.from_json(record) if record is not None else None
    return found
