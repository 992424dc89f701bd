"""A deliberately unreliable imitation of the service's `/model` and `/archs`, for client tests.

It speaks the real contract (ETag = quoted SHA-256, X-Model-* headers, 304 on If-None-Match,
206 on ``Range: bytes=a-`` with If-Range, JSON errors with X-Error-Code) but each request first
takes the next fault from a script:

    ok                  answer normally
    drop:N              send headers with the full Content-Length, N body bytes, then close the socket
    corrupt             full length and the right-looking checksum headers, but flipped bytes
    busy:S              503 busy with ``Retry-After: S``
    stall:S             sleep S seconds before sending anything (client read timeout)
    ignore_range        answer 200 with the whole body even when Range is asked for
    error:CODE:STATUS   a JSON error with X-Error-Code CODE

With ``immutable_urls`` on (as the real service since issue 41), ``/model`` also names the body's
content-addressed URL in ``Content-Location`` and ``/blobs/sha256/<hex>`` serves it (same faults),
a digest other than the current body's is ``404 blob_not_found`` (as after a checkpoint update).

When the script runs out, requests are answered ``ok``. Every request is recorded (method, path,
query, headers) so tests can count attempts and inspect what the client sent.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    from typing import Self

CATALOG = {"resnet20": {"scope": "all", "widths": {"min": 1, "max": 64, "default": 64}, "labels": ["a", "b"]}}


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    fault: str


class _QuietHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients hanging up on a stalled or dropped response is the point of this server


class FaultyServer:
    def __init__(self, body: bytes):
        self.publish(body)
        self.requests: list[Recorded] = []
        self.immutable_urls = False
        self._script: deque[str] = deque()
        self._lock = threading.Lock()
        self._httpd = _QuietHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)

    def publish(self, body: bytes) -> None:
        """Serve new bytes from now on, as the real service does after a checkpoint update."""
        self.body = body
        self.sha256 = hashlib.sha256(body).hexdigest()
        self.etag = f'"{self.sha256}"'

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def script(self, *faults: str) -> None:
        with self._lock:
            self._script.extend(faults)

    def model_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path == "/model"]

    def blob_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.startswith("/blobs/")]

    def next_fault(self) -> str:
        with self._lock:
            return self._script.popleft() if self._script else "ok"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def _handler_for(server: FaultyServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # keep pytest output clean
            pass

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            fault = server.next_fault()
            server.requests.append(Recorded("GET", url.path, {k: v[0] for k, v in parse_qs(url.query).items()},
                                            {k.lower(): v for k, v in self.headers.items()}, fault))
            kind, _, arg = fault.partition(":")
            if kind == "stall":
                time.sleep(float(arg))
            if kind == "busy":
                return self._error(503, "busy", "generation queue full", {"Retry-After": arg})
            if kind == "error":
                code, status = arg.split(":")
                return self._error(int(status), code, f"scripted {code}")
            if url.path == "/archs":
                return self._send(200, json.dumps(CATALOG).encode(), {"Content-Type": "application/json"})
            blob_path = f"/blobs/sha256/{server.sha256}"
            if server.immutable_urls and url.path.startswith("/blobs/sha256/"):
                if url.path != blob_path:
                    return self._error(404, "blob_not_found", "not served here")
                return self._model(kind, arg, {"Cache-Control": "public, max-age=31536000, immutable"})
            if url.path != "/model":
                return self._error(404, "not_found", "no such route")
            pinned = {"Content-Location": blob_path} if server.immutable_urls else {}
            self._model(kind, arg, {"Cache-Control": "no-cache", **pinned})

        def _model(self, kind: str, arg: str, extra: dict[str, str]) -> None:
            body, headers = server.body, {
                "Content-Type": "application/octet-stream", "ETag": server.etag, "X-Model-Sha256": server.sha256,
                "X-Model-Arch": "resnet20", "X-Model-Width": "8", "X-Model-Dtype": "float32",
                "X-Model-Params": "1234", "X-Checkpoint": "0123456789ab", "Accept-Ranges": "bytes", **extra}
            if self.headers.get("If-None-Match") == server.etag:
                return self._send(304, b"", headers, content_length=False)
            status, start = 200, 0
            match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
            if match and kind != "ignore_range" and self.headers.get("If-Range", server.etag) == server.etag:
                start = int(match.group(1))
                if start >= len(body):
                    return self._error(416, "range_not_satisfiable", "range starts past the end",
                                       {"Content-Range": f"bytes */{len(body)}"})
                status = 206
                headers["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
            payload = body[start:]
            if kind == "corrupt":
                payload = bytes(b ^ 0xFF for b in payload)
            if kind == "drop":
                self._send_head(status, headers, len(payload))
                self.wfile.write(payload[: int(arg)])
                self.wfile.flush()
                self.close_connection = True
                return
            self._send(status, payload, headers)

        def _error(self, status: int, code: str, message: str, extra: dict[str, str] | None = None) -> None:
            body = json.dumps({"code": code, "message": message, "request_id": "req-test"}).encode()
            self._send(status, body, {"Content-Type": "application/json", "X-Error-Code": code, **(extra or {})})

        def _send_head(self, status: int, headers: dict[str, str], length: int | None) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            if length is not None:
                self.send_header("Content-Length", str(length))
            self.end_headers()

        def _send(self, status: int, body: bytes, headers: dict[str, str], content_length: bool = True) -> None:
            self._send_head(status, headers, len(body) if content_length else None)
            self.wfile.write(body)

    return Handler
