"""``GET /archs``: the catalog, so a client can choose an arch and a width before downloading."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from service.api.deps import ApiKey, CatalogDep

router = APIRouter(prefix="/archs", tags=["catalog"], dependencies=[ApiKey])


@router.get("")
async def list_archs(catalog: CatalogDep) -> dict[str, Any]:
    """Every servable arch: scope, widths, dataset, input shape, labels, params and evaluation per width."""
    return catalog.describe()
