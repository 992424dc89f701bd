"""The HTTP contract seen from the client: request building and response reading, no I/O.

Shared by the sync and async clients; every header name used to talk to the service lives here.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

import httpx

from neumeta_client import errors
from neumeta_client._retry import parse_retry_after
from neumeta_client.constants import DTYPES

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ModelRequest:
    """One `GET /model` request, validated before anything touches the network.

    Either an ``arch`` (a width, or the largest width within one budget) or a ``family``: the server
    then chooses the arch and width from its measured tables (the most accurate model within
    ``max_bytes``/``max_params``, or with ``min_accuracy`` the smallest file meeting it).
    """

    arch: str | None = None
    width: int | None = None
    dtype: str = "float32"
    samples: int | None = None
    max_params: int | None = None
    max_bytes: int | None = None
    family: str | None = None
    min_accuracy: float | None = None  # percent, family requests only

    def __post_init__(self) -> None:
        if (self.arch is None) == (self.family is None):
            raise errors.InvalidParameter("give exactly one of arch (one checkpoint) and family (the server chooses "
                                          f"across it), got arch={self.arch!r}, family={self.family!r}")
        for name in ("arch", "family"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise errors.InvalidParameter(f"{name} must be a non-empty string, got {value!r}")
        if self.family is not None:
            refused = [name for name in ("width", "samples") if getattr(self, name) is not None]
            if refused:
                raise errors.InvalidParameter(f"{' and '.join(refused)} cannot be combined with family: the server "
                                              "chooses the arch and width from its measured tables")
        else:
            if self.min_accuracy is not None:
                raise errors.InvalidParameter("min_accuracy chooses across a family: pass family= instead of arch")
            chosen = [name for name in ("width", "max_params", "max_bytes") if getattr(self, name) is not None]
            if len(chosen) > 1:
                raise errors.InvalidParameter(
                    f"give at most one of width, max_params, max_bytes (got {', '.join(chosen)})")
        for name in ("width", "samples", "max_params", "max_bytes"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise errors.InvalidParameter(f"{name} must be a positive integer, got {value!r}")
        accuracy = self.min_accuracy
        if accuracy is not None and (isinstance(accuracy, bool) or not isinstance(accuracy, (int, float))
                                     or not 0 <= accuracy <= 100):
            raise errors.InvalidParameter(f"min_accuracy must be a percentage in 0..100, got {accuracy!r}")
        if self.dtype not in DTYPES:
            raise errors.InvalidParameter(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")

    def params(self) -> dict[str, str]:
        fields = {"arch": self.arch, "family": self.family, "width": self.width, "dtype": self.dtype,
                  "samples": self.samples, "max_params": self.max_params, "max_bytes": self.max_bytes,
                  "min_accuracy": _percent(self.min_accuracy) if self.min_accuracy is not None else None}
        return {k: str(v) for k, v in fields.items() if v is not None}

    def cache_key(self, base_url: httpx.URL) -> str:
        """A file-name-safe key naming this request on this server: readable prefix + hash of the exact form."""
        if self.width is not None:
            selector = f"w{self.width}"
        elif self.family is not None:  # every constraint is part of the request
            parts = [f"{tag}{value}" for tag, value in (("b", self.max_bytes), ("p", self.max_params),
                                                        ("a", self.min_accuracy)) if value is not None]
            selector = "-".join(parts) or "best"
        elif self.max_params is not None:
            selector = f"p{self.max_params}"
        elif self.max_bytes is not None:
            selector = f"b{self.max_bytes}"
        else:
            selector = "wdefault"
        host = f"{base_url.host}_{base_url.port or base_url.scheme}"
        name = self.arch if self.arch is not None else f"family-{self.family}"
        readable = f"{host}--{name}--{selector}--{self.dtype}--k{self.samples or 'default'}"
        exact = json.dumps([str(base_url), sorted(self.params().items())])
        digest = hashlib.sha256(exact.encode()).hexdigest()[:10]
        return re.sub(r"[^A-Za-z0-9._-]", "_", readable) + "--" + digest


def _percent(value: float) -> str:
    """A plain decimal, as the server parses it (no exponent; at most 6 decimals)."""
    return f"{value:.6f}".rstrip("0").rstrip(".")


@dataclass(frozen=True)
class ModelHeaders:
    """What the response headers of `GET /model` promise about the body."""

    sha256: str
    etag: str
    arch: str | None
    width: int | None
    dtype: str | None
    params: int | None
    checkpoint: str | None
    length: int | None  # full body length (from Content-Range on a 206)
    accuracy: str | None = None  # X-Model-Accuracy, e.g. "92.44; split=test[:5000]; measured_as=float32"

    @classmethod
    def parse(cls, response: httpx.Response) -> ModelHeaders:
        h = response.headers
        etag = h.get("etag", "")
        sha = (h.get("x-model-sha256") or _unquote_etag(etag)).lower()
        if not _SHA256_HEX.match(sha):
            raise errors.UnexpectedResponse(
                f"server sent no usable SHA-256 (X-Model-Sha256={h.get('x-model-sha256')!r}, ETag={etag!r})",
                status=response.status_code, request_id=h.get("x-request-id"))
        return cls(sha256=sha, etag=etag or f'"{sha}"', arch=h.get("x-model-arch"),
                   width=_int_or_none(h.get("x-model-width")), dtype=h.get("x-model-dtype"),
                   params=_int_or_none(h.get("x-model-params")), checkpoint=h.get("x-checkpoint"),
                   length=_full_length(response), accuracy=h.get("x-model-accuracy"))


def model_request_headers(etag: str | None, resume_from: int = 0, resume_etag: str | None = None) -> dict[str, str]:
    # identity: byte offsets for Range must refer to the stored bytes, not a compressed stream.
    headers = {"Accept-Encoding": "identity"}
    if etag:
        headers["If-None-Match"] = etag
    if resume_from > 0 and resume_etag:
        headers["Range"] = f"bytes={resume_from}-"
        headers["If-Range"] = resume_etag  # a changed model answers 200 with the whole new body
    return headers


def content_range_start(response: httpx.Response) -> int | None:
    match = re.match(r"bytes (\d+)-(\d+)/(\d+|\*)", response.headers.get("content-range", ""))
    return int(match.group(1)) if match else None


def error_from_response(response: httpx.Response) -> errors.NeuMetaError:
    """The typed error for a non-success response: X-Error-Code first, then the JSON body, then the status."""
    body: dict[str, Any] = {}
    try:
        parsed = response.json()
        if isinstance(parsed, dict):
            body = parsed
    except (ValueError, UnicodeDecodeError, httpx.ResponseNotRead):
        pass
    code = response.headers.get("x-error-code") or body.get("code")
    status = response.status_code
    # The status stands in only when no code came back (a proxy answered): a code this client does
    # not know (not_found from a wrong base URL, say) must not turn a 404 into UnknownArch.
    cls = errors.BY_CODE.get(str(code)) if code else errors.BY_STATUS.get(status)
    if cls is None:
        cls = errors.ServerError if status >= 500 else errors.UnexpectedResponse
    message = str(body.get("message") or f"HTTP {status} {response.reason_phrase}".strip())
    request_id = body.get("request_id") or response.headers.get("x-request-id")
    if cls is errors.Busy:
        return errors.Busy(message, retry_after=parse_retry_after(response.headers.get("retry-after")),
                           status=status, request_id=request_id)
    return cls(message, status=status, request_id=request_id)


def _unquote_etag(etag: str) -> str:
    return etag.removeprefix("W/").strip('"')


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _full_length(response: httpx.Response) -> int | None:
    match = re.match(r"bytes \d+-\d+/(\d+)", response.headers.get("content-range", ""))
    if match:
        return int(match.group(1))
    return _int_or_none(response.headers.get("content-length")) if response.status_code == 200 else None
