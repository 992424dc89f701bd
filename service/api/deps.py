"""Dependencies: the resources the lifespan creates, the generator, and the API-key gate.

Everything the lifespan opens lives in one ``Service`` on ``app.state.service``; routes take it
(or one part of it) through the ``Annotated`` aliases below. They are ``async def`` on purpose:
FastAPI runs plain ``def`` dependencies in a thread pool, a thread hop per dependency per request.
The generator a cache miss runs is a dependency too, so tests replace it through
``app.dependency_overrides[get_generator]`` (to slow it down, hold it, count or break it).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request

from service.errors import Unauthorized
from service.metrics import Metrics
from service.serving.catalog import Catalog
from service.serving.pipeline import Generator, render
from service.settings import Settings

if TYPE_CHECKING:
    from service.cache import BlobCache
    from service.serving.digests import DigestIndex
    from service.serving.generation import GenerationPool


@dataclass
class Service:
    settings: Settings
    metrics: Metrics
    catalog: Catalog
    cache: BlobCache
    pool: GenerationPool
    backend: str  # the concrete hypernetwork backend ("torch" or "triton"), resolved once at start-up
    digests: DigestIndex
    precision: str = "fp32"  # the Triton kernel's dot precision; changes the bytes it generates


async def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


async def get_catalog(request: Request) -> Catalog:
    catalog: Catalog = request.app.state.service.catalog
    return catalog


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics  # exists before the lifespan runs, unlike the rest
    return metrics


async def get_generator() -> Generator:
    """What a cache miss runs (on a worker thread): resolved request -> exported, hashed model."""
    return render


ServiceDep = Annotated[Service, Depends(get_service)]
GeneratorDep = Annotated[Generator, Depends(get_generator)]
CatalogDep = Annotated[Catalog, Depends(get_catalog)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]


async def require_api_key(request: Request) -> None:
    """With ``api_keys`` set, demand ``Authorization: Bearer <key>``; compares in constant time."""
    keys: list[bytes] = request.app.state.api_keys
    if not keys:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("this endpoint needs 'Authorization: Bearer <api key>'")
    presented = token.strip().encode("utf-8", "surrogateescape")
    # Compare against every key without stopping early, so timing does not reveal which matched.
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(presented, key)
    if not matched:
        raise Unauthorized("the API key is not valid")


ApiKey = Depends(require_api_key)
