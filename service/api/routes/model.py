"""``GET``/``HEAD /model``: the current ONNX network of a request, generated on a miss, cached by content.

This URL names whatever the current checkpoint and generator make for the request, so it answers
``Cache-Control: no-cache`` and names the same bytes under an immutable URL in ``Content-Location``
(``/blobs/sha256/<hex>``, see routes/blobs.py).

A request is parsed once (``parse_model_query``) and resolved once (``service.serving.selection``)
into a ``ModelRequest`` that the cache key, the generator and the headers all trust.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from service.api import conditional, openapi
from service.api.delivery import deliver, preconditions
from service.api.deps import ApiKey, GeneratorDep, ServiceDep
from service.api.headers import model_headers
from service.api.query import parse_model_query
from service.serving.fetch import fetch
from service.serving.request import ModelRequest
from service.serving.selection import select, sizes_files

router = APIRouter(prefix="/model", tags=["model"], dependencies=[ApiKey])


@router.api_route("", methods=["GET", "HEAD"], response_class=Response, **openapi.model_route())
async def get_model(request: Request, service: ServiceDep, generate: GeneratorDep) -> Response:
    """The ONNX model of ``arch`` at ``width`` (or the largest width within ``max_params``/``max_bytes``),
    or the model of a ``family`` that its measured tables choose for the budgets and accuracy floor."""
    query = parse_model_query(request.query_params)

    def resolve() -> ModelRequest:
        return select(service.catalog, query, backend=service.backend, precision=service.precision,
                      max_samples=service.settings.max_samples)

    # Budgets and families may build ONNX graphs to size them: off the event loop.
    model = await run_in_threadpool(resolve) if sizes_files(query) else resolve()
    known = service.digests.known(model.cache_key)
    if known is not None and (request.headers.get("if-none-match") or request.headers.get("if-match")):
        # The key names one file, whose digest is remembered even after its blob was evicted:
        # conditionals are answered without the blob (and without a generation).
        request.state.cache = "hit"
        headers = model_headers(model, known, "hit", immutable=False)
        answer = preconditions(request, conditional.etag_of(known), headers)
        if answer is not None:
            return answer
    blob, cache_status = await fetch(service, model, generate)
    request.state.cache = cache_status
    return deliver(request, blob.data, model_headers(model, blob.sha256, cache_status, immutable=False),
                   service.metrics)
