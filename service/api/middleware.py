"""Per-request plumbing as one pure ASGI middleware (cheaper than BaseHTTPMiddleware on the hot path).

For every HTTP request it: takes a sane incoming ``X-Request-ID`` or makes one and returns it on
the response (errors included); counts the request by route template, method and status and
times it; writes one JSON access-log line; and turns an unhandled exception into a 500
``internal`` error whose body holds no traceback (the traceback goes to the server log).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import error_response
from service.metrics import Metrics

access_log = logging.getLogger("neumeta.access")
error_log = logging.getLogger("neumeta.error")

_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
UNMATCHED = "unmatched"  # route label for 404s, so random paths cannot blow up metric cardinality


def request_id_from(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if _SAFE_REQUEST_ID.fullmatch(candidate):
                return candidate
            break  # present but unsafe: replace it rather than echo it into logs and headers
    return uuid.uuid4().hex


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = request_id_from(scope)
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            error_log.exception(
                "unhandled error", extra={"request_id": request_id, "method": scope["method"], "path": scope["path"]}
            )
            if response_started:
                raise  # headers are out; the server can only drop the connection
            response = error_response(500, "internal", "internal server error", request_id)
            await response(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", UNMATCHED) if route is not None else UNMATCHED
            elapsed = time.perf_counter() - started
            self.metrics.requests.labels(template, scope["method"], str(status)).inc()
            self.metrics.request_seconds.labels(template).observe(elapsed)
            access_log.info(
                "%s %s %d", scope["method"], scope["path"], status,
                extra={
                    "request_id": request_id, "method": scope["method"], "path": scope["path"],
                    "query": scope.get("query_string", b"").decode("latin-1")[:256], "status": status,
                    "duration_ms": round(elapsed * 1000, 2), "cache": state.get("cache"),
                },
            )
