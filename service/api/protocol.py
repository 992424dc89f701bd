"""The HTTP/1.1 protocol ``neumeta serve`` runs: uvicorn's h11 protocol with bounded request heads.

uvicorn's default (httptools, when installed) accepted a 64 MB request header, and no uvicorn
protocol bounds the time a client may take to send its head: a half-sent header held its
connection (and its memory) for as long as the client liked. Here:

- a head larger than ``NEUMETA_MAX_HEADER_BYTES`` (h11's ``max_incomplete_event_size``) is
  refused with ``431`` and the coded JSON body every other error has;
- a head not complete ``NEUMETA_HEADER_TIMEOUT_S`` after the connection opened (or after the
  previous response, on a kept-alive connection) closes the connection, as nginx's
  ``client_header_timeout`` does; other malformed heads get a coded ``400``.

The app never sees these requests (they have no complete head to route), so they are not counted
in ``neumeta_http_requests_total``.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from service.settings import get_settings


class BoundedH11Protocol(H11Protocol):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        settings = get_settings()  # serve exported the merged settings to the environment
        self._max_head_bytes = settings.max_header_bytes
        self._head_timeout_s = settings.header_timeout_s
        self._head_deadline: asyncio.TimerHandle | None = None
        self._head_bytes = 0  # of the request head being received

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE:
            if self._head_deadline is None:
                self._arm_head_deadline()  # the next request on a kept-alive connection starts its clock
            # h11 bounds only an *incomplete* head: a big one that arrives whole would pass.
            end = data.find(b"\r\n\r\n")
            self._head_bytes += len(data) if end < 0 else end + 4
            if self._head_bytes > self._max_head_bytes:
                self._disarm_head_deadline()
                self._refuse(431, "headers_too_large", f"the request head is larger than {self._max_head_bytes} bytes")
                return
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the head is complete (or the request failed)
            self._disarm_head_deadline()
            self._head_bytes = 0

    def _arm_head_deadline(self) -> None:
        self._disarm_head_deadline()
        self._head_deadline = self.loop.call_later(self._head_timeout_s, self._head_too_slow)

    def _disarm_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.logger.info("closing a connection whose request head took over %gs", self._head_timeout_s)
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's plain-text 400, as the service's coded JSON."""
        self._refuse(400, "bad_request", f"malformed HTTP request: {msg}")

    def _refuse(self, status: int, code: str, message: str) -> None:
        request_id = uuid.uuid4().hex
        body = json.dumps({"code": code, "message": message, "request_id": request_id}).encode()
        # Written raw: h11 is in its error state after a protocol error and sends nothing more.
        self.transport.write(_head(status, code, request_id, len(body)) + body)
        self.transport.close()


_REASONS = {400: "Bad Request", 431: "Request Header Fields Too Large"}


def _head(status: int, code: str, request_id: str, length: int) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS[status]}", "content-type: application/json",
             f"content-length: {length}", f"x-error-code: {code}", f"x-request-id: {request_id}",
             "connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1")
