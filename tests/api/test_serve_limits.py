"""``neumeta serve`` bounds a request head's size and the time to send it (service/api/protocol.py),
on a real server process, with raw sockets (no HTTP client would send these)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures.redis import free_port
from tests.waiting import wait_until_answering

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

MAX_HEADER_BYTES = 4096
HEADER_TIMEOUT_S = 1.0


@pytest.fixture
def served(tiny_ckpt_path, tmp_path) -> Iterator[int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEUMETA_")}
    env.update(NEUMETA_MAX_HEADER_BYTES=str(MAX_HEADER_BYTES), NEUMETA_HEADER_TIMEOUT_S=str(HEADER_TIMEOUT_S))
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "service.serving.server", "--port", str(port),
                                 "--checkpoint", str(tiny_ckpt_path)], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        wait_until_answering(proc, f"http://127.0.0.1:{port}/healthz", log)
        yield port
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_a_head_over_the_limit_is_a_coded_431(served):
    with socket.create_connection(("127.0.0.1", served), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (4 * MAX_HEADER_BYTES) + b"\r\n\r\n")
        answer = _read_all(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 ")
    assert b"x-error-code: headers_too_large" in head.lower()
    parsed = json.loads(body)
    assert parsed["code"] == "headers_too_large" and str(MAX_HEADER_BYTES) in parsed["message"]
    # A head just under the limit is served as usual.
    ok = httpx.get(f"http://127.0.0.1:{served}/healthz", headers={"X-Big": "a" * (MAX_HEADER_BYTES // 2)})
    assert ok.status_code == 200


def test_a_malformed_head_is_a_coded_400(served):
    with socket.create_connection(("127.0.0.1", served), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost x\r\n\r\n")  # a header line without a colon
        head, _, body = _read_all(sock).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and json.loads(body)["code"] == "bad_request"


def test_a_half_sent_head_is_dropped_after_the_header_timeout(served):
    with socket.create_connection(("127.0.0.1", served), timeout=10 * HEADER_TIMEOUT_S + 10) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # and never the rest
        assert sock.recv(1024) == b""  # closed by the server
        held = time.monotonic() - started
    assert HEADER_TIMEOUT_S * 0.9 <= held < HEADER_TIMEOUT_S + 3
    # Idle after a response on a kept-alive connection: the next head gets its own clock.
    with socket.create_connection(("127.0.0.1", served), timeout=10 * HEADER_TIMEOUT_S + 10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        response = b""
        while not response.endswith(b'{"status":"ok"}'):  # the whole response, head and body
            response += sock.recv(65536)
        assert response.startswith(b"HTTP/1.1 200 ")
        started = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHo")
        assert sock.recv(1024) == b""
        assert time.monotonic() - started < HEADER_TIMEOUT_S + 3
