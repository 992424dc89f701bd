"""Answering for one model blob: preconditions, 304, 412, ranges and HEAD (RFC 9110 section 13).

Both URLs of a model (the mutable ``/model?...`` and the immutable ``/blobs/sha256/<hex>``) answer
through here, so they agree on every conditional and partial request. Preconditions are evaluated
in the RFC's order: ``If-Match`` (412 when it names another file), then ``If-None-Match`` (304),
then ``Range`` under ``If-Range``.
"""

from __future__ import annotations

from fastapi import Request, Response

from service.api import conditional
from service.api.errors import error_response, request_id_of
from service.errors import PreconditionFailed
from service.metrics import Metrics

MEDIA_TYPE = "application/octet-stream"


def preconditions(request: Request, etag: str, headers: dict[str, str]) -> Response | None:
    """The 304 to send instead of the body, or None; raises ``PreconditionFailed`` (412)."""
    if not conditional.match(request.headers.get("if-match"), etag):
        raise PreconditionFailed(f"If-Match names another file; this URL serves {etag} now")
    if conditional.none_match(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    return None


def deliver(request: Request, blob: bytes, headers: dict[str, str], metrics: Metrics) -> Response:
    """The full, partial (206) or bodiless (304, HEAD) answer for ``blob``; ``headers`` carry its ETag."""
    etag = headers["ETag"]
    not_modified = preconditions(request, etag, headers)
    if not_modified is not None:
        return not_modified
    status, body = 200, blob
    if conditional.range_applies(request.headers.get("if-range"), etag):
        try:
            byte_range = conditional.parse_range(request.headers.get("range"), len(blob))
        except conditional.Unsatisfiable:
            return error_response(
                416, "range_not_satisfiable", f"the model is {len(blob)} bytes; the range selects none of them",
                request_id_of(request), {"Content-Range": f"bytes */{len(blob)}", "ETag": etag},
            )
        if byte_range is not None:
            status, body = 206, blob[byte_range.start:byte_range.stop]
            headers = {**headers, "Content-Range": byte_range.content_range(len(blob))}
    if request.method == "HEAD":  # same headers, including the length GET would send, no body
        return Response(status_code=status, headers={**headers, "Content-Length": str(len(body))},
                        media_type=MEDIA_TYPE)
    metrics.bytes_served.inc(len(body))
    return Response(body, status_code=status, headers=headers, media_type=MEDIA_TYPE)
