"""``GET``/``HEAD /model``: an ONNX network of any width, generated on a miss, cached by content."""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from service import pipeline
from service.api import conditional
from service.api.deps import ApiKey, Service, ServiceDep
from service.api.errors import error_response, request_id_of
from service.api.query import parse_model_query
from service.api.schemas import ErrorBody
from service.api.selection import resolve_width
from service.archs import param_count
from service.cache import cache_key
from service.export import GENERATOR_VERSION
from service.hypernet.checkpoint import Checkpoint
from service.hypernet.generate import resolve_samples

router = APIRouter(prefix="/model", tags=["model"], dependencies=[ApiKey])

IMMUTABLE = "public, max-age=31536000, immutable"  # a (key -> bytes) mapping never changes
_ERRORS: dict[int | str, dict[str, Any]] = {s: {"model": ErrorBody} for s in (401, 404, 416, 422, 503)}
_params = lru_cache(maxsize=1024)(param_count)  # walks every tensor spec; too slow for each hit


def _render(ckpt: Checkpoint, width: int, dtype: str, samples: int, service: Service) -> bytes:
    """Runs on a generation worker thread; counted once per real generation."""
    backend, metrics = service.backend, service.metrics
    started = time.perf_counter()
    blob = pipeline.render_model(ckpt, width, dtype, samples=samples, backend=backend, precision=service.precision)
    metrics.generation_seconds.labels(ckpt.manifest.arch, backend).observe(time.perf_counter() - started)
    metrics.generations.labels(ckpt.manifest.arch, backend).inc()
    return blob.data


def _headers(ckpt: Checkpoint, width: int, dtype: str, samples: int, digest: str, cache_status: str) -> dict[str, str]:
    m = ckpt.manifest
    return {
        "ETag": conditional.etag_of(digest), "X-Model-Sha256": digest, "X-Model-Arch": m.arch,
        "X-Model-Width": str(width), "X-Model-Params": str(_params(m.scope, width, m.in_channels, m.num_classes)),
        "X-Model-Dtype": dtype, "X-Model-Samples": str(samples), "X-Checkpoint": ckpt.short_sha,
        "X-Cache": cache_status, "Cache-Control": IMMUTABLE, "Accept-Ranges": "bytes",
        "Content-Disposition": f'attachment; filename="{m.arch}-w{width}-{dtype}.onnx"',
    }


@router.api_route("", methods=["GET", "HEAD"], response_class=Response, responses={
    200: {"content": {"application/octet-stream": {}}, "description": "ONNX ModelProto"},
    206: {"description": "the requested byte range"}, 304: {"description": "If-None-Match matched"},
    **_ERRORS,
})
async def get_model(request: Request, service: ServiceDep) -> Response:
    """The ONNX model of ``arch`` at ``width`` (or the largest width within ``max_params``/``max_bytes``)."""
    query = parse_model_query(request.query_params)
    ckpt = service.catalog.get(query.arch)
    m = ckpt.manifest
    samples = resolve_samples(ckpt, query.samples, service.settings.max_samples)
    if query.width is not None and query.width in m.widths_allowed:
        width = query.width
    elif query.width is None and query.max_params is None and query.max_bytes is None:
        width = m.default_width
    else:  # a budget (sizing may build ONNX graphs), or a bad width whose error resolve_width words
        width = await run_in_threadpool(resolve_width, ckpt, query, samples)
    key = cache_key(GENERATOR_VERSION, ckpt.sha256, service.numerics, m.arch, width, query.dtype, samples)
    if_none_match = request.headers.get("if-none-match")
    known = service.digests.known(key) if if_none_match else None
    if known is not None and conditional.none_match(if_none_match, conditional.etag_of(known)):
        # The client holds what this key names: no need for the blob, which may have been evicted.
        request.state.cache = "hit"
        return Response(status_code=304, headers=_headers(ckpt, width, query.dtype, samples, known, "hit"))

    async def create() -> bytes:
        return await service.pool.run(lambda: _render(ckpt, width, query.dtype, samples, service))

    blob, cache_status = await service.cache.get_or_create(key, create)
    request.state.cache = cache_status
    digest = service.digests.sha256(key, blob)
    etag = conditional.etag_of(digest)
    headers = _headers(ckpt, width, query.dtype, samples, digest, cache_status)
    if conditional.none_match(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    status, body = 200, blob
    if conditional.range_applies(request.headers.get("if-range"), etag):
        try:
            byte_range = conditional.parse_range(request.headers.get("range"), len(blob))
        except conditional.Unsatisfiable:
            return error_response(
                416, "range_not_satisfiable", f"the model is {len(blob)} bytes; the range selects none of them",
                request_id_of(request), {"Content-Range": f"bytes */{len(blob)}", "ETag": etag},
            )
        if byte_range is not None:
            status, body = 206, blob[byte_range.start:byte_range.stop]
            headers["Content-Range"] = byte_range.content_range(len(blob))
    if request.method == "HEAD":  # same headers, including the length GET would send, no body
        headers["Content-Length"] = str(len(body))
        return Response(status_code=status, headers=headers, media_type="application/octet-stream")
    service.metrics.bytes_served.inc(len(body))
    return Response(body, status_code=status, headers=headers, media_type="application/octet-stream")
