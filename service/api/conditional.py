"""Conditional and partial requests on an immutable blob (RFC 9110 sections 13 and 14).

The ETag is the quoted SHA-256 of the body, so it is strong: ``If-None-Match`` compares weakly
(``W/`` prefixes ignored, ``*`` matches anything), ``If-Match`` and ``If-Range`` strongly. Only single byte ranges
are served; a multi-range or malformed ``Range`` header is ignored (the full body is sent), as the
RFC allows, and a range that starts past the end is unsatisfiable (416).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_RANGE = re.compile(r"bytes=(?:(\d{1,18})-(\d{0,18})|-(\d{1,18}))")


def etag_of(sha256: str) -> str:
    return f'"{sha256}"'


def none_match(header: str | None, etag: str) -> bool:
    """True when ``If-None-Match`` matches, i.e. the client's copy is current (answer 304)."""
    if not header:
        return False
    for tag in header.split(","):
        tag = tag.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False


def match(header: str | None, etag: str) -> bool:
    """``If-Match`` holds (absent, ``*``, or a list naming ``etag``, compared strongly); else 412."""
    if header is None:
        return True
    for tag in header.split(","):
        tag = tag.strip()
        if tag == "*" or tag == etag:  # a weak W/ tag never matches strongly
            return True
    return False


def range_applies(if_range: str | None, etag: str) -> bool:
    """``If-Range`` present: use the Range only if it names this exact entity (strong match)."""
    return if_range is None or if_range.strip() == etag


@dataclass(frozen=True)
class ByteRange:
    start: int
    stop: int  # exclusive

    def content_range(self, total: int) -> str:
        return f"bytes {self.start}-{self.stop - 1}/{total}"


class Unsatisfiable(Exception):
    """The Range is well-formed but selects no byte of a ``total``-byte body."""


def parse_range(header: str | None, total: int) -> ByteRange | None:
    """The single range to send, None for the whole body; raises ``Unsatisfiable`` for 416."""
    if not header:
        return None
    match = _RANGE.fullmatch(header.strip())
    if not match:
        return None  # malformed or multi-range: ignore it and send the full body
    first, last, suffix = match.groups()
    if suffix is not None:
        length = int(suffix)
        if length == 0 or total == 0:
            raise Unsatisfiable(header)
        return ByteRange(max(0, total - length), total)
    start = int(first)
    stop = total if not last else min(int(last) + 1, total)
    if last and int(last) < start:
        return None  # "bytes=5-2" is invalid syntax per the RFC: ignore
    if start >= total:
        raise Unsatisfiable(header)
    return ByteRange(start, stop)
