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
from service.api.deps import ApiKey, Service, ServiceDep
from service.api.digests import Recipe
from service.api.query import ModelQuery, parse_model_query
from service.api.selection import choose_in_family, resolve_width
from service.hypernet.checkpoint import Checkpoint
from service.hypernet.generate import resolve_samples

router = APIRouter(prefix="/model", tags=["model"], dependencies=[ApiKey])


@router.api_route("", methods=["GET", "HEAD"], response_class=Response, **openapi.model_route())
async def get_model(request: Request, service: ServiceDep) -> Response:
    """The ONNX model of ``arch`` at ``width`` (or the largest width within ``max_params``/``max_bytes``),
    or the model of a ``family`` that its measured tables choose for the budgets and accuracy floor."""
    query = parse_model_query(request.query_params)
    if query.family is not None:
        ckpt, width = await run_in_threadpool(choose_in_family, service.catalog, query)
        samples = resolve_samples(ckpt, None, service.settings.max_samples)  # the K of the measured tables
    else:
        ckpt, width, samples = await _arch_width(service, query)
    m = ckpt.manifest
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


async def _arch_width(service: Service, query: ModelQuery) -> tuple[Checkpoint, int, int]:
    """``(checkpoint, width, K)`` of an ``arch=`` request."""
    assert query.arch is not None  # parse_model_query demands exactly one of arch and family
    ckpt = service.catalog.get(query.arch)
    m = ckpt.manifest
    samples = resolve_samples(ckpt, query.samples, service.settings.max_samples)
    if query.width is not None and query.width in m.widths_allowed:
        return ckpt, query.width, samples
    if query.width is None and query.max_params is None and query.max_bytes is None:
        return ckpt, m.default_width, samples
    # a budget (sizing may build ONNX graphs), or a bad width whose error resolve_width words
    return ckpt, await run_in_threadpool(resolve_width, ckpt, query, samples), samples
