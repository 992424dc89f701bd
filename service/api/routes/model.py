"""``GET``/``HEAD /model``: the current ONNX network of a request, generated on a miss, cached by content.

This URL names whatever the current checkpoint and generator make for the request, so it answers
``Cache-Control: no-cache`` and names the same bytes under an immutable URL in ``Content-Location``
(``/blobs/sha256/<hex>``, see routes/blobs.py).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from service.api import conditional, openapi, serving
from service.api.delivery import deliver, preconditions
from service.api.deps import ApiKey, ServiceDep
from service.api.digests import Recipe
from service.api.query import parse_model_query
from service.api.selection import resolve_width
from service.hypernet.generate import resolve_samples

router = APIRouter(prefix="/model", tags=["model"], dependencies=[ApiKey])


@router.api_route("", methods=["GET", "HEAD"], response_class=Response, **openapi.model_route())
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
    recipe = Recipe(m.arch, ckpt.sha256, width, query.dtype, samples)
    known = service.digests.known(serving.key_of(service, recipe))
    if known is not None and (request.headers.get("if-none-match") or request.headers.get("if-match")):
        # The key names one file, whose digest is remembered even after its blob was evicted:
        # conditionals are answered without the blob (and without a generation).
        request.state.cache = "hit"
        headers = serving.model_headers(ckpt, recipe, known, "hit", immutable=False)
        answer = preconditions(request, conditional.etag_of(known), headers)
        if answer is not None:
            return answer
    blob, digest, cache_status = await serving.fetch(service, ckpt, recipe)
    request.state.cache = cache_status
    return deliver(request, blob, serving.model_headers(ckpt, recipe, digest, cache_status, immutable=False),
                   service.metrics)
