"""Every failure becomes ``{"code", "message", "request_id"}`` with an ``X-Error-Code`` header.

Typed service errors keep their documented code and status; request validation failures are
``invalid_parameter`` (``width_out_of_range`` when the width is at fault); unknown routes and
methods use plain HTTP codes (``not_found``, ``method_not_allowed``). Unhandled exceptions are
answered by the request middleware (``internal``, no traceback in the body).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.errors import Busy, NeuMetaError, Unauthorized

HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


def request_id_of(request: Request) -> str:
    return getattr(request.state, "request_id", "") or ""


def error_response(
    status: int, code: str, message: str, request_id: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"code": code, "message": message, "request_id": request_id}
    return JSONResponse(body, status_code=status, headers={"X-Error-Code": code, **(headers or {})})


async def _neumeta_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, NeuMetaError)
    headers: dict[str, str] = {}
    if isinstance(exc, Busy):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = 'Bearer realm="neumeta"'
    return error_response(exc.status, exc.code, exc.message, request_id_of(request), headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    loc = [str(part) for part in first.get("loc", ())]
    code = "width_out_of_range" if "width" in loc else "invalid_parameter"
    where = ".".join(p for p in loc if p not in ("query", "body")) or "request"
    return error_response(422, code, f"{where}: {first.get('msg')}", request_id_of(request))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = HTTP_CODES.get(exc.status_code, "invalid_parameter" if exc.status_code < 500 else "internal")
    return error_response(exc.status_code, code, str(exc.detail), request_id_of(request), dict(exc.headers or {}))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(NeuMetaError, _neumeta_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
