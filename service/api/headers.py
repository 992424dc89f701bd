"""One model's bytes and headers, shared by its two URLs (``/model?...`` and ``/blobs/sha256/<hex>``).

``fetch`` returns the blob of a ``Recipe`` from the cache, generating it on a miss, and records its
digest so that the content-addressed URL can find it again; ``model_headers`` are the headers both
URLs send (they differ only in ``Cache-Control`` and ``Content-Location``).
"""

from __future__ import annotations

import asyncio
import time
from functools import lru_cache

from service import pipeline
from service.api import conditional
from service.api.deps import Service
from service.api.digests import Recipe
from service.archs import param_count
from service.cache import CacheStatus, cache_key
from service.errors import Busy
from service.export import GENERATOR_VERSION
from service.hypernet.checkpoint import Checkpoint

# /model names the current model of a request: its bytes change with the checkpoint, the generator
# version or the backend's numerics, so a cache must ask every time (a 304 is cheap: see digests.py).
REVALIDATE = "no-cache"
# /blobs/sha256/<hex> names bytes by their digest: they can never change.
IMMUTABLE = "public, max-age=31536000, immutable"
_params = lru_cache(maxsize=1024)(param_count)  # walks every tensor spec; too slow for each hit


def blob_url(digest: str) -> str:
    return f"/blobs/sha256/{digest}"


def key_of(service: Service, recipe: Recipe) -> str:
    return cache_key(GENERATOR_VERSION, recipe.checkpoint_sha, service.numerics, recipe.arch, recipe.width,
                     recipe.dtype, recipe.samples)


def _render(ckpt: Checkpoint, recipe: Recipe, service: Service) -> bytes:
    """Runs on a generation worker thread; counted once per real generation."""
    backend, metrics = service.backend, service.metrics
    started = time.perf_counter()
    blob = pipeline.render_model(ckpt, recipe.width, recipe.dtype, samples=recipe.samples, backend=backend,
                                 precision=service.precision)
    metrics.generation_seconds.labels(ckpt.manifest.arch, backend).observe(time.perf_counter() - started)
    metrics.generations.labels(ckpt.manifest.arch, backend).inc()
    return blob.data


async def fetch(service: Service, ckpt: Checkpoint, recipe: Recipe) -> tuple[bytes, str, CacheStatus]:
    """``(blob, sha256, X-Cache)`` of ``recipe``, generated on a cache miss.

    The request waits at most ``generation_timeout_s``; the generation itself (a single-flight task
    of the cache, shielded from its callers) runs on and fills the cache, so the ``busy`` answer's
    Retry-After points at a retry that finds the model instead of starting it again.
    """
    key = key_of(service, recipe)

    async def create() -> bytes:
        return await service.pool.run(lambda: _render(ckpt, recipe, service), key)

    timeout_s = service.settings.generation_timeout_s
    try:
        blob, cache_status = await asyncio.wait_for(service.cache.get_or_create(key, create), timeout_s)
    except TimeoutError:
        retry_after = service.pool.retry_after_s(key)
        raise Busy(f"the model was not ready within {timeout_s:g}s; it is still being generated and will be "
                   f"cached: retry in {retry_after}s", retry_after=retry_after) from None
    known = service.digests.known(key)
    digest = service.digests.sha256(key, blob, recipe)
    if digest != known:  # first time here: let every replica (and worker) answer /blobs for it
        await service.cache.put_record(digest_record(digest), recipe.to_json(key))
    return blob, digest, cache_status


def digest_record(digest: str) -> str:
    return f"sha256:{digest}"


async def recipe_for(service: Service, digest: str) -> tuple[str, Recipe] | None:
    """``(cache key, recipe)`` of a digest served here, or by any replica sharing this Redis."""
    found = service.digests.recipe_of(digest)
    if found is None:
        record = await service.cache.get_record(digest_record(digest))
        found = Recipe.from_json(record) if record is not None else None
    return found


def measured_accuracy(ckpt: Checkpoint, width: int) -> str | None:
    """``X-Model-Accuracy``: the manifest's measured test accuracy at ``width`` (percent) and the
    split it was measured on, e.g. ``92.44; split=test[:5000]; measured_as=float32``. The manifest
    measures the float32 network, whatever dtype is served; None for a width it did not measure."""
    evaluation = ckpt.manifest.evaluation or {}
    row = (evaluation.get("per_width") or {}).get(str(width))
    if not isinstance(row, dict) or row.get("accuracy") is None:
        return None
    split = row.get("measured_on") or evaluation.get("split", "unknown")
    return f"{float(row['accuracy']):g}; split={split}; measured_as=float32"


def model_headers(
    ckpt: Checkpoint, recipe: Recipe, digest: str, cache_status: str, *, immutable: bool
) -> dict[str, str]:
    m = ckpt.manifest
    headers = {
        "ETag": conditional.etag_of(digest), "X-Model-Sha256": digest, "X-Model-Arch": m.arch,
        "X-Model-Width": str(recipe.width),
        "X-Model-Params": str(_params(m.scope, recipe.width, m.in_channels, m.num_classes)),
        "X-Model-Dtype": recipe.dtype, "X-Model-Samples": str(recipe.samples), "X-Checkpoint": ckpt.short_sha,
        "X-Cache": cache_status, "Accept-Ranges": "bytes",
        "Content-Disposition": f'attachment; filename="{m.arch}-w{recipe.width}-{recipe.dtype}.onnx"',
    }
    accuracy = measured_accuracy(ckpt, recipe.width)
    if accuracy is not None:
        headers["X-Model-Accuracy"] = accuracy
    if immutable:
        headers["Cache-Control"] = IMMUTABLE
    else:
        headers["Cache-Control"] = REVALIDATE
        headers["Content-Location"] = blob_url(digest)  # the same bytes under a name that never changes
    return headers
