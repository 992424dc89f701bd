"""``GET``/``HEAD /blobs/sha256/{digest}``: a model by the SHA-256 of its bytes, cacheable forever.

``/model`` names the current model of a request and points here in ``Content-Location``. This
replica answers for every digest it has served (the digest index of service/api/digests.py) and,
with Redis, for every digest a replica sharing that Redis has served (a small record per digest),
regenerating the bytes if the caches evicted them; a digest nobody served, or one made from a
checkpoint or numerics this replica does not have, is a coded 404 ``blob_not_found`` (the client
then asks ``/model``).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from service.api import openapi, serving
from service.api.delivery import deliver
from service.api.deps import ApiKey, ServiceDep
from service.errors import BlobNotFound, UnknownArch

router = APIRouter(prefix="/blobs", tags=["model"], dependencies=[ApiKey])


@router.api_route("/sha256/{digest}", methods=["GET", "HEAD"], response_class=Response, **openapi.blob_route())
async def get_blob(digest: str, request: Request, service: ServiceDep) -> Response:
    """The model whose bytes hash to ``digest`` (64 lowercase hex), with the same headers as ``/model``."""
    found = await serving.recipe_for(service, digest) if openapi.SHA256_HEX.fullmatch(digest) else None
    if found is None:
        raise BlobNotFound(f"this replica has not served a model with sha256 {digest[:64]!r}; ask /model for it")
    key, recipe = found
    if key != serving.key_of(service, recipe):  # made by a replica with other numerics (e.g. a GPU)
        raise BlobNotFound(f"sha256 {digest} was made by a replica with other numerics; ask /model for it")
    try:
        ckpt = service.catalog.get(recipe.arch)
    except UnknownArch:
        ckpt = None
    if ckpt is None or ckpt.sha256 != recipe.checkpoint_sha:
        raise BlobNotFound(f"sha256 {digest} was made from checkpoint {recipe.checkpoint_sha[:12]}, "
                           "which this replica no longer serves; ask /model for the current model")
    blob, actual, cache_status = await serving.fetch(service, ckpt, recipe)
    if actual != digest:  # the backend's numerics changed under the same key: never serve other bytes
        raise BlobNotFound(f"sha256 {digest} can no longer be produced here; ask /model for the current model")
    request.state.cache = cache_status
    return deliver(request, blob, serving.model_headers(ckpt, recipe, digest, cache_status, immutable=True),
                   service.metrics)
