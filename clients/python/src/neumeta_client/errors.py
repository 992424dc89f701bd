"""Every exception the client raises, one hierarchy under `NeuMetaError`.

Each class mirrors one server error code (the ``X-Error-Code`` header) or one client-side failure,
and also inherits the builtin a caller would naturally catch: ``except ValueError`` catches a bad
width, ``except ConnectionError`` catches being offline.
"""

from __future__ import annotations


class NeuMetaError(Exception):
    """Base class. ``code`` is the server's error code (or a client-side one), ``status`` the HTTP status."""

    code = "error"

    def __init__(self, message: str, *, status: int | None = None, request_id: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.request_id = request_id

    def __str__(self) -> str:
        suffix = f" (request_id={self.request_id})" if self.request_id else ""
        return f"{self.message}{suffix}"


# SERVER ERRORS: one class per documented code


class UnknownArch(NeuMetaError, LookupError):
    """The server has no checkpoint registered under that arch id (404)."""

    code = "unknown_arch"


class WidthOutOfRange(NeuMetaError, ValueError):
    """The width (or the width a budget selected) is outside the arch's allowed range (422)."""

    code = "width_out_of_range"


class InvalidParameter(NeuMetaError, ValueError):
    """A request parameter is malformed or inconsistent (422); also raised locally before any request."""

    code = "invalid_parameter"


class NoModelFits(NeuMetaError, ValueError):
    """No measured model of the family meets the budgets and accuracy floor of a ``family=`` pull (422);
    the message names the closest one."""

    code = "no_model_fits"


class Unauthorized(NeuMetaError, PermissionError):
    """Missing or wrong API key (401)."""

    code = "unauthorized"


class ServerError(NeuMetaError):
    """The server failed (5xx) and retries did not help."""

    code = "internal"


class Busy(ServerError):
    """The server is overloaded (503, or 429) and asked us to come back after ``retry_after`` seconds."""

    code = "busy"

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: object):
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.retry_after = retry_after


class UnexpectedResponse(NeuMetaError):
    """The server answered something this client does not understand (missing checksum header, bad range)."""

    code = "unexpected_response"


# TRANSPORT ERRORS


class TransportError(NeuMetaError, ConnectionError):
    """The connection failed (refused, reset, dropped mid-body) on every attempt."""

    code = "transport"


class RequestTimeout(TransportError, TimeoutError):
    """Connecting or reading timed out on every attempt."""

    code = "timeout"


# INTEGRITY AND CACHE ERRORS


class ChecksumMismatch(NeuMetaError, OSError):
    """The downloaded bytes do not hash to the SHA-256 the server announced (after retries)."""

    code = "checksum_mismatch"

    def __init__(self, message: str, *, expected: str, actual: str, **kwargs: object):
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.expected = expected
        self.actual = actual


class CacheWriteError(NeuMetaError, OSError):
    """The cache could not be written (disk full, read-only, removed); ``errno`` is the OS's."""

    code = "cache_write"

    def __init__(self, message: str, *, errno: int | None = None, **kwargs: object):
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.errno = errno


class OfflineError(NeuMetaError, ConnectionError):
    """Offline mode is on and the cache has no usable copy of what was asked for."""

    code = "offline"


class CachedCopyCorrupt(OfflineError):
    """Offline mode is on and the cached copy no longer hashes to its SHA-256 (deleted: the next
    online pull downloads it again)."""

    code = "cached_copy_corrupt"


class CacheLockTimeout(NeuMetaError, TimeoutError):
    """Another process held this model's cache lock for longer than ``lock_timeout``."""

    code = "cache_lock_timeout"


class MissingExtra(NeuMetaError, ImportError):
    """An optional dependency is not installed (``pip install 'neumeta-client[onnx]'``)."""

    code = "missing_extra"


# X-Error-Code -> class; statuses are the fallback when a proxy answered without our header.
BY_CODE: dict[str, type[NeuMetaError]] = {
    cls.code: cls for cls in (UnknownArch, WidthOutOfRange, InvalidParameter, NoModelFits, Unauthorized, ServerError,
                              Busy)
}
BY_STATUS: dict[int, type[NeuMetaError]] = {401: Unauthorized, 403: Unauthorized, 404: UnknownArch,
                                             422: InvalidParameter, 429: Busy, 503: Busy}
