"""``GET /archs``: the catalog, so a client can choose an arch and a width before downloading."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from service.api.deps import ApiKey, CatalogDep

router = APIRouter(prefix="/archs", tags=["catalog"], dependencies=[ApiKey])


@router.api_route("", methods=["GET", "HEAD"])
def list_archs(catalog: CatalogDep) -> dict[str, Any]:
    """Every servable arch: scope, widths, dataset, input shape, labels, and params, ONNX bytes and
    evaluation per width; and ``families``: each family's frontier of bytes against accuracy per dtype.
    A plain ``def``: the first call sizes every width's ONNX file (about a second), so FastAPI runs it
    in its threadpool instead of on the event loop."""
    return catalog.describe()
