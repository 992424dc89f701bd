"""``GET``/``HEAD /blobs/sha256/{digest}``: a model by the SHA-256 of its bytes, cacheable forever.

``/model`` names the current model of a request and points here in ``Content-Location``. This
replica answers for every digest it has served (the digest index of service/serving/digests.py) and,
with Redis, for every digest a replica sharing that Redis has served (a small record per digest),
regenerating the bytes if the caches evicted them; a digest nobody served, or one made from a
checkpoint or numerics this replica does not have, is a coded 404 ``blob_not_found`` (the client
then asks ``/model``).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from service.api import openapi
from service.api.delivery import deliver
from service.api.deps import ApiKey, GeneratorDep, ServiceDep
from service.api.headers import model_headers
from service.errors import BlobNotFound, UnknownArch
from service.serving.fetch import fetch, recipe_for
from service.serving.request import ModelRequest, numerics

router = APIRouter(prefix="/blobs", tags=["model"], dependencies=[ApiKey])


@router.api_route("/sha256/{digest}", methods=["GET", "HEAD"], response_class=Response, **openapi.blob_route())
async def get_blob(digest: str, request: Request, service: ServiceDep, generate: GeneratorDep) -> Response:
    """The model whose bytes hash to ``digest`` (64 lowercase hex), with the same headers as ``/model``."""
    found = await recipe_for(service, digest) if openapi.SHA256_HEX.fullmatch(digest) else None
    if found is None:
        raise BlobNotFound(f"this replica has not served a model with sha256 {digest[:64]!r}; ask /model for it")
    key, recipe = found
    if key != recipe.cache_key(numerics(service.backend, service.precision)):  # e.g. made on a GPU
        raise BlobNotFound(f"sha256 {digest} was made by a replica with other numerics; ask /model for it")
    try:
        ckpt = service.catalog.get(recipe.arch)
    except UnknownArch:
        ckpt = None
    if ckpt is None or ckpt.sha256 != recipe.checkpoint_sha:
        raise BlobNotFound(f"sha256 {digest} was made from checkpoint {recipe.checkpoint_sha[:12]}, "
                           "which this replica no longer serves; ask /model for the current model")
    # Checked when its request was resolved (here, or on a replica with this checkpoint): trusted.
    model = ModelRequest(ckpt, recipe.width, recipe.dtype, recipe.samples, service.backend, service.precision)
    blob, cache_status = await fetch(service, model, generate)
    if blob.sha256 != digest:  # the backend's numerics changed under the same key: never serve other bytes
        raise BlobNotFound(f"sha256 {digest} can no longer be produced here; ask /model for the current model")
    request.state.cache = cache_status
    return deliver(request, blob.data, model_headers(model, digest, cache_status, immutable=True), service.metrics)
