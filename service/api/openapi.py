"""The OpenAPI document, made to describe what the routes really do.

``/model`` parses its query string by hand (service/api/query.py: strict, unknown parameters
refused), so FastAPI cannot see its parameters; they are declared here from the same constants.
Every response names its headers and every error status its codes (as an enum). operationIds are
``<method>_<route>``: unique (GET and HEAD of one route differ) and stable across restarts (FastAPI's
own take the first element of a set of methods). With API keys on, the gated routes carry a bearer
security scheme.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from service.api.query import MAX_DIGITS
from service.export import DTYPES

SHA256_HEX = re.compile(r"[0-9a-f]{64}")

_ERROR_CODES = {
    401: ["unauthorized"], 404: ["unknown_arch", "blob_not_found", "not_found"],
    412: ["precondition_failed"], 416: ["range_not_satisfiable"],
    422: ["invalid_parameter", "width_out_of_range", "no_model_fits"], 503: ["busy"], 500: ["internal"],
}
_HEADER_DOCS = {
    "ETag": "quoted SHA-256 of the whole body (strong)",
    "X-Model-Sha256": "SHA-256 of the whole body, 64 lowercase hex",
    "X-Model-Arch": "catalog id", "X-Model-Width": "width served", "X-Model-Params": "parameters of the network",
    "X-Model-Dtype": "weight storage type", "X-Model-Samples": "K, hypernetwork samples averaged",
    "X-Model-Accuracy": "measured test accuracy of the served width in percent, the split and the dtype it was "
                        "measured as, e.g. '92.44; split=test[:5000]; measured_as=float32' (absent: not measured)",
    "X-Checkpoint": "first 12 hex of the checkpoint's SHA-256",
    "X-Cache": "hit, miss or coalesced", "Cache-Control": "no-cache on /model; immutable on /blobs",
    "Content-Location": "(/model only) /blobs/sha256/<hex>: the same bytes under a URL that never changes",
    "Content-Disposition": "attachment; filename=...", "Accept-Ranges": "bytes",
    "X-Request-ID": "the caller's id, or a new one",
}
_INTEGER = {"type": "integer", "minimum": 1, "maximum": 10**MAX_DIGITS - 1}


def _headers(*names: str) -> dict[str, Any]:
    return {name: {"$ref": f"#/components/headers/{name}"} for name in names}


def _error(status: int, *extra_headers: str) -> dict[str, Any]:
    schema = {"$ref": "#/components/schemas/ErrorBody"}
    return {"description": ", ".join(_ERROR_CODES[status]), "headers": _headers("X-Error-Code", *extra_headers),
            "content": {"application/json": {"schema": {"allOf": [schema], "properties": {
                "code": {"type": "string", "enum": _ERROR_CODES[status]}}}}}}


def _blob_responses() -> dict[int | str, dict[str, Any]]:
    model = tuple(_HEADER_DOCS)
    binary = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
    return {
        200: {"description": "the ONNX ModelProto", "content": binary, "headers": _headers(*model)},
        206: {"description": "the requested byte range (Range, under If-Range)", "content": binary,
              "headers": _headers(*model, "Content-Range")},
        304: {"description": "If-None-Match named this file", "headers": _headers(*model)},
        401: _error(401, "WWW-Authenticate"), 404: _error(404), 412: _error(412), 416: _error(416, "Content-Range"),
        422: _error(422), 503: _error(503, "Retry-After"),
    }


def _conditional_parameters() -> list[dict[str, Any]]:
    return [{"name": name, "in": "header", "required": False, "schema": {"type": "string"}, "description": doc}
            for name, doc in (("If-None-Match", "ETag(s) held: 304 when one is this file"),
                              ("If-Match", "ETag(s): 412 unless one is this file"),
                              ("Range", "bytes=a-b, bytes=a- or bytes=-n"),
                              ("If-Range", "ETag: honour Range only for this exact file"))]


def model_route() -> dict[str, Any]:
    """Keyword arguments of the ``/model`` route: its responses and its hand-parsed query."""
    query = [
        {"name": "arch", "in": "query", "description": "catalog id (GET /archs); exactly one of arch and family",
         "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]{0,63}$"}},
        {"name": "family", "in": "query",
         "description": "choose the arch and width across a family (GET /archs, families) instead of naming an arch: "
                        "the most accurate model within max_bytes/max_params (ties to fewer bytes), or with "
                        "min_accuracy the smallest file meeting it; every constraint given must hold, nothing fits "
                        "-> 422 no_model_fits. Not with arch, width or samples",
         "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]{0,63}$"}},
        {"name": "width", "in": "query", "description": "inner width; at most one of width, max_params, max_bytes",
         "schema": _INTEGER},
        {"name": "max_params", "in": "query", "description": "largest width with at most this many parameters "
                                                             "(family: a budget, combinable with max_bytes)",
         "schema": _INTEGER},
        {"name": "max_bytes", "in": "query", "description": "largest width whose file has at most this many bytes "
                                                            "(family: a budget in bytes of the requested dtype)",
         "schema": _INTEGER},
        {"name": "min_accuracy", "in": "query",
         "description": "family only: the measured test accuracy floor in percent (as in GET /archs), a plain "
                        "decimal with at most 6 decimals",
         "schema": {"type": "number", "minimum": 0, "maximum": 100}},
        {"name": "dtype", "in": "query", "schema": {"type": "string", "enum": list(DTYPES), "default": "float32"}},
        {"name": "samples", "in": "query", "description": "K, 1..NEUMETA_MAX_SAMPLES", "schema": _INTEGER},
    ]
    return {"responses": _blob_responses(), "openapi_extra": {"parameters": query + _conditional_parameters()}}


def blob_route() -> dict[str, Any]:
    """Keyword arguments of the ``/blobs/sha256/{digest}`` route."""
    return {"responses": _blob_responses(), "openapi_extra": {"parameters": _conditional_parameters()}}


def install(app: FastAPI, *, bearer: bool, gated_prefixes: list[str]) -> None:
    """Replace ``app.openapi`` with the post-processed document (built once, on first use).

    ``bearer``: API keys are on; ``gated_prefixes``: the paths under the key (routers with the gate).
    """

    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            with warnings.catch_warnings():  # FastAPI's ids repeat for GET and HEAD; _finish replaces them
                warnings.filterwarnings("ignore", message="Duplicate Operation ID")
                doc = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
            app.openapi_schema = _finish(doc, bearer, gated_prefixes)
            service = getattr(app.state, "service", None)  # set by the lifespan; absent in a bare app
            if service is not None:
                _describe_catalog(app.openapi_schema, service.catalog)
        return app.openapi_schema

    app.openapi = build  # type: ignore[method-assign]


def _describe_catalog(doc: dict[str, Any], catalog: Any) -> None:
    """Narrow ``arch`` to the loaded catalog ids, ``family`` to their families and ``width`` to the
    widest allowed range."""
    ids = catalog.ids()
    if not ids:
        return
    widest = max(catalog.get(arch).manifest.widths_allowed.max for arch in ids)
    families = sorted({catalog.get(arch).manifest.family for arch in ids})
    for operation in doc["paths"].get("/model", {}).values():
        for parameter in operation["parameters"]:
            if parameter["name"] == "arch":
                parameter["schema"] = {"type": "string", "enum": ids}
            elif parameter["name"] == "family":
                parameter["schema"] = {"type": "string", "enum": families}
            elif parameter["name"] == "width":
                parameter["schema"] = {**_INTEGER, "maximum": widest}
                parameter["description"] += f"; each arch allows a sub-range of 1..{widest} (GET /archs)"


def operation_id(method: str, path: str) -> str:
    """``get_model``, ``head_blobs_sha256``: from the method and the path's fixed words only."""
    words = re.sub(r"\{[^}]*\}", "", path)
    return f"{method.lower()}_{re.sub(r'[^a-z0-9]+', '_', words.lower()).strip('_')}"


def _finish(doc: dict[str, Any], bearer: bool, gated_prefixes: list[str]) -> dict[str, Any]:
    components = doc.setdefault("components", {})
    components.setdefault("schemas", {})["ErrorBody"] = {
        "type": "object", "required": ["code", "message", "request_id"],
        "properties": {"code": {"type": "string", "enum": sorted({c for cs in _ERROR_CODES.values() for c in cs})},
                       "message": {"type": "string"}, "request_id": {"type": "string"}}}
    components["headers"] = {name: {"description": doc_, "schema": {"type": "string"}}
                             for name, doc_ in {**_HEADER_DOCS, "Content-Range": "bytes a-b/total or bytes */total",
                                                "Retry-After": "seconds", "X-Error-Code": "the body's code",
                                                "WWW-Authenticate": "Bearer"}.items()}
    if bearer:
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    for path, operations in doc.get("paths", {}).items():
        for method, operation in operations.items():
            operation["operationId"] = operation_id(method, path)
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "digest":  # a malformed digest is blob_not_found (404), not 422
                    parameter["schema"] = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
            if any(path.startswith(prefix) for prefix in gated_prefixes):
                operation["responses"].setdefault("401", _error(401, "WWW-Authenticate"))
                if bearer:
                    operation["security"] = [{"bearer": []}]
            for status in ("422",):  # FastAPI's own validation schema does not describe our errors
                if operation.get("responses", {}).get(status, {}).get("content", {}).get(
                        "application/json", {}).get("schema", {}).get("$ref", "").endswith("HTTPValidationError"):
                    operation["responses"][status] = _error(422)
    for unused in ("HTTPValidationError", "ValidationError"):
        components["schemas"].pop(unused, None)
    return doc
