"""Flows shared by both clients: the retry loop, the lock wait, and `GET /archs`.

Each flow is a generator of effects (see `_effects`); nothing here performs I/O on the network.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import filelock
import httpx

from neumeta_client import errors
from neumeta_client._effects import Flow, Send, Sleep
from neumeta_client._protocol import error_from_response
from neumeta_client._retry import RETRY_STATUSES, RetryPolicy, RetryState
from neumeta_client.cache import ModelCache

T = TypeVar("T")

LOCK_POLL_S = 0.1


@dataclass(frozen=True)
class Context:
    """What a flow needs from its client; `build_request` is the httpx client's (base URL, headers, timeouts)."""

    base_url: httpx.URL
    cache: ModelCache
    retry: RetryPolicy
    offline: bool
    lock_timeout_s: float
    build_request: Callable[..., httpx.Request]


class Retryable(Exception):
    """Raised by one attempt to ask `with_retries` for another; carries the error to raise if none is left."""

    def __init__(self, error: errors.NeuMetaError, retry_after: float | None = None):
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


def with_retries(policy: RetryPolicy, attempt: Callable[[], Flow[T]]) -> Flow[T]:
    state = RetryState(policy)
    while True:
        try:
            return (yield from attempt())
        except Retryable as failure:
            delay = state.delay_before_retry(failure.retry_after)
            if delay is None:
                raise failure.error from failure.error.__cause__
            yield Sleep(delay)


def transport_error(exc: httpx.RequestError) -> Retryable:
    cls = errors.RequestTimeout if isinstance(exc, httpx.TimeoutException) else errors.TransportError
    try:
        where = str(exc.request.url)
    except RuntimeError:  # httpx raises when the error has no request attached
        where = "the server"
    error = cls(f"{type(exc).__name__} talking to {where}: {exc or 'no details'}")
    error.__cause__ = exc
    return Retryable(error)


def failed_response(response: httpx.Response) -> errors.NeuMetaError | Retryable:
    """The error for a non-success response, wrapped as `Retryable` when another attempt may succeed."""
    error = error_from_response(response)
    if response.status_code in RETRY_STATUSES:
        return Retryable(error, getattr(error, "retry_after", None))
    return error


def acquire_lock(lock: filelock.FileLock, timeout_s: float) -> Flow[None]:
    """Poll the lock without blocking the thread, so the async client's event loop keeps running."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            lock.acquire(timeout=0)
            return
        except filelock.Timeout:
            if time.monotonic() >= deadline:
                raise errors.CacheLockTimeout(
                    f"another download holds {lock.lock_file} (waited {timeout_s:.0f}s); "
                    "if no other process is running, delete that file") from None
            yield Sleep(LOCK_POLL_S)


def archs_flow(ctx: Context) -> Flow[dict[str, Any]]:
    """`GET /archs`; the answer is kept so that offline mode can still list what the server offers."""
    host = ctx.base_url.netloc.decode()
    if ctx.offline:
        cached = ctx.cache.read_catalog(host)
        if cached is None:
            raise errors.OfflineError(f"offline and no catalog of {host} in the cache at {ctx.cache.root}")
        return cached

    def attempt() -> Flow[httpx.Response]:
        try:
            response: httpx.Response = yield Send(ctx.build_request("GET", "/archs"))
        except httpx.RequestError as exc:
            raise transport_error(exc) from exc
        if response.status_code != 200:
            raise failed_response(response)
        return response

    response = yield from with_retries(ctx.retry, attempt)
    try:
        catalog = response.json()
    except ValueError as exc:
        raise errors.UnexpectedResponse("GET /archs did not return JSON", status=response.status_code) from exc
    if not isinstance(catalog, dict):
        raise errors.UnexpectedResponse("GET /archs did not return a JSON object", status=response.status_code)
    ctx.cache.write_catalog(host, catalog)
    return catalog
