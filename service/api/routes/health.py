"""``GET /healthz`` (the process answers; ``/livez`` is the same probe under the Kubernetes and
BentoML name) and ``GET /readyz`` (it can serve models)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.api.deps import ServiceDep
from service.api.schemas import Health, LoadedCheckpoint, Readiness

router = APIRouter(tags=["health"])


# HEAD wherever GET works (RFC 9110 9.3.2): probes and proxies use it.
@router.api_route("/healthz", methods=["GET", "HEAD"])
@router.api_route("/livez", methods=["GET", "HEAD"], include_in_schema=False)
async def healthz() -> Health:
    """Liveness: the process is up and its event loop answers."""
    return Health()


@router.api_route("/readyz", methods=["GET", "HEAD"], response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz(service: ServiceDep) -> JSONResponse:
    """Readiness: at least one checkpoint is loaded. A degraded Redis still serves (it is an optimisation)."""
    catalog, cache = service.catalog, service.cache
    await cache.ping()  # refreshes the degraded flag, bounded by the Redis socket timeout
    loaded = [LoadedCheckpoint(arch=arch, checkpoint=catalog.get(arch).short_sha) for arch in catalog.ids()]
    body = Readiness(status="ready" if loaded else "not_ready", checkpoints=loaded, cache=cache.status(),
                     redis=cache.redis_status(), backend=service.backend)
    return JSONResponse(body.model_dump(), status_code=200 if loaded else 503)
