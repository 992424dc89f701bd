"""``GET /metrics``: Prometheus text exposition of this app's own registry."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.api.deps import MetricsDep

router = APIRouter(tags=["metrics"])


@router.api_route("/metrics", methods=["GET", "HEAD"], response_class=Response)
async def metrics(registry: MetricsDep) -> Response:
    """Requests, latency, generations, cache events, in-flight work and bytes served."""
    return Response(generate_latest(registry.registry), media_type=CONTENT_TYPE_LATEST)
