"""The service's error vocabulary, shared by the HTTP API and the CLI.

Each error carries the documented ``code`` and HTTP status; the API turns it into
``{"code", "message", "request_id"}`` with an ``X-Error-Code`` header, the CLI into one line.
"""

from __future__ import annotations


class NeuMetaError(Exception):
    code = "internal"
    status = 500

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class UnknownArch(NeuMetaError, LookupError):
    code, status = "unknown_arch", 404


class WidthOutOfRange(NeuMetaError, ValueError):
    code, status = "width_out_of_range", 422


class InvalidParameter(NeuMetaError, ValueError):
    code, status = "invalid_parameter", 422


class NoModelFits(NeuMetaError, ValueError):
    """A family request (``family=``) that no measured model of the family meets; the message names
    the closest one."""

    code, status = "no_model_fits", 422


class Unauthorized(NeuMetaError):
    code, status = "unauthorized", 401


class BlobNotFound(NeuMetaError, LookupError):
    """A content-addressed URL (``/blobs/sha256/<hex>``) this replica cannot produce: it never served
    that digest, or no longer holds the checkpoint that made it. ``/model`` names the current one."""

    code, status = "blob_not_found", 404


class PreconditionFailed(NeuMetaError):
    """``If-Match`` names a different file than the one the URL serves now."""

    code, status = "precondition_failed", 412


class Busy(NeuMetaError):
    code, status = "busy", 503

    def __init__(self, message: str, retry_after: int = 1):
        super().__init__(message)
        self.retry_after = retry_after


class CheckpointError(NeuMetaError, ValueError):
    """A checkpoint file is missing, truncated, corrupt or inconsistent with its manifest."""

    code, status = "internal", 500
