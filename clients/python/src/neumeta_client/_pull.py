"""`pull`: revalidate or download one model into the cache, verified, resumable, under the key's lock.

One attempt is one `GET /model` (the mutable URL: the current model of the request). It carries
``If-None-Match`` when the cache holds the blob and the blob still hashes to its name (304 -> done;
a rotted blob is deleted and downloaded again), and ``Range`` + ``If-Range`` when an interrupted
download left a partial file. A resume goes first to the immutable URL the server named in
``Content-Location`` (``/blobs/sha256/<hex>``: its bytes cannot change under the partial), and
after a 404 there (another replica, a checkpoint update) to ``/model``, where ``If-Range`` turns a
changed model into a whole new 200 instead of a splice. The body streams into
``incomplete/<key>.incomplete`` while being hashed; only bytes whose SHA-256 equals the server's
``X-Model-Sha256`` are renamed into ``blobs/``.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import httpx

from neumeta_client import errors
from neumeta_client._effects import Flow, Send
from neumeta_client._flows import Context, Retryable, acquire_lock, failed_response, transport_error, with_retries
from neumeta_client._protocol import (
    ModelHeaders,
    ModelRequest,
    content_range_start,
    error_from_response,
    model_request_headers,
)
from neumeta_client.cache import ModelCache, PartialMeta, Ref

logger = logging.getLogger("neumeta_client")

Progress = Callable[[int, "int | None"], None]  # (bytes on disk, total bytes or None)


class BlobWriter:
    """Body sink for one attempt: appends to the key's partial file and hashes everything in it."""

    def __init__(self, cache: ModelCache, key: str, progress: Progress | None):
        self.cache, self.key, self.progress = cache, key, progress
        partial = cache.read_partial(key)
        if partial is not None and partial[1].length is not None and partial[0] >= partial[1].length:
            cache.discard_partial(key)  # complete but never promoted (crash): cheaper to refetch than to trust
            partial = None
        self.resume_from: int = partial[0] if partial is not None else 0
        self.resume_meta: PartialMeta | None = partial[1] if partial is not None else None
        self.headers: ModelHeaders | None = None
        self.resume_rejected = False
        self.received = 0
        self._file: BinaryIO | None = None
        self._hash = hashlib.sha256()

    def accepts(self, response: httpx.Response) -> bool:
        if response.status_code == 200:  # whole body: start over, even if a partial existed
            self.headers = ModelHeaders.parse(response)
            # The validator is written before the first byte so that any interruption can resume.
            self.cache.write_partial_meta(self.key, PartialMeta(self.headers.etag, self.headers.sha256,
                                                                self.headers.length, immutable_url(response)))
            self._open("wb")
            return True
        if response.status_code == 206:
            headers = ModelHeaders.parse(response)
            start = content_range_start(response)
            if self.resume_meta is None or start != self.resume_from or headers.sha256 != self.resume_meta.sha256:
                self.resume_rejected = True  # not the bytes we asked for: drop the partial, retry whole
                self.cache.discard_partial(self.key)
                return False
            self.headers = headers
            self._open("ab")
            return True
        return False

    def _open(self, mode: str) -> None:
        path = self.cache.partial_path(self.key)
        path.parent.mkdir(parents=True, exist_ok=True)
        if mode == "ab":
            with open(path, "rb") as existing:  # the digest covers the whole file, not just this attempt
                for block in iter(lambda: existing.read(1 << 20), b""):
                    self._hash.update(block)
                    self.received += len(block)
        self._file = open(path, "ab" if mode == "ab" else "wb")  # noqa: SIM115 - open across writes; close() shuts it

    def write(self, chunk: bytes) -> None:
        assert self._file is not None, "write before accepts()"
        self._file.write(chunk)
        self._hash.update(chunk)
        self.received += len(chunk)
        if self.progress is not None:
            self.progress(self.received, self.headers.length if self.headers else None)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def finish(self) -> Path:
        """Verify length and SHA-256, then promote; a mismatch deletes the partial (its bytes are suspect)."""
        assert self.headers is not None
        if self._file is not None:  # on disk before the rename: a power cut must not leave a right-sized wrong blob
            self._file.flush()
            os.fsync(self._file.fileno())
        self.close()
        actual = self._hash.hexdigest()
        expected = self.headers.sha256
        length = self.headers.length
        if actual != expected or (length is not None and self.received != length):
            self.cache.discard_partial(self.key)
            raise errors.ChecksumMismatch(
                f"downloaded {self.received} bytes hashing to {actual[:12]}..., "
                f"server announced {length} bytes with sha256 {expected[:12]}...",
                expected=expected, actual=actual)
        return self.cache.promote(self.key, expected)


def pull_flow(ctx: Context, request: ModelRequest, progress: Progress | None = None) -> Flow[Path]:
    key = request.cache_key(ctx.base_url)
    if ctx.offline:
        ref = ctx.cache.read_ref(key)
        if ref is None or ctx.cache.cached_blob(ref) is None:
            raise errors.OfflineError(f"offline and {describe(request)} is not in the cache at {ctx.cache.root}")
        blob = ctx.cache.verified_blob(ref)
        if blob is None:
            raise errors.CachedCopyCorrupt(f"offline and the cached copy of {describe(request)} no longer matches "
                                           f"its sha256 {ref.sha256[:12]}... (deleted; pull online to fetch it again)")
        ctx.cache.mark_used(key)
        return blob
    lock = ctx.cache.lock(key)
    yield from acquire_lock(lock, ctx.lock_timeout_s)
    try:
        cached = ctx.cache.cached_blob(ctx.cache.read_ref(key)) is not None
        policy = ctx.retry.for_revalidation() if cached else ctx.retry
        path = yield from with_retries(policy, lambda: _attempt(ctx, request, key, progress))
        ctx.cache.mark_used(key)  # under the lock, so a prune cannot pick it as least recently used
    except (errors.TransportError, errors.ServerError) as exc:
        # Unreachable, overloaded (busy) or failing server, but a copy on disk that was verified when
        # it was downloaded: an edge device keeps working with it (as huggingface_hub falls back to
        # its cache). Client errors (4xx: bad request, key, arch) still raise.
        blob = ctx.cache.verified_blob(ctx.cache.read_ref(key))
        if blob is None:
            raise
        logger.warning("could not revalidate %s (%s); using the cached copy %s", describe(request), exc, blob)
        ctx.cache.mark_used(key)
        path = blob
    except OSError as exc:
        if isinstance(exc, errors.NeuMetaError):  # ChecksumMismatch is an OSError too
            raise
        # Disk full, read-only or vanished cache: no retry helps; a partial stays for a later resume.
        raise errors.CacheWriteError(f"could not write {describe(request)} into the cache at {ctx.cache.root}: "
                                     f"{exc}", errno=exc.errno) from exc
    finally:
        lock.release()
    return path


def _attempt(ctx: Context, request: ModelRequest, key: str, progress: Progress | None) -> Flow[Path]:
    cache = ctx.cache
    ref = cache.read_ref(key)
    # Re-read under the lock (another process may have just finished), and hashed: a 304 vouches for
    # the server's bytes, not for what the disk made of them.
    blob = cache.verified_blob(ref)
    sink = BlobWriter(cache, key, progress)
    resume_etag = sink.resume_meta.etag if sink.resume_meta else None
    headers = model_request_headers(etag=ref.etag if ref is not None and blob is not None else None,
                                    resume_from=sink.resume_from, resume_etag=resume_etag)
    http_request = ctx.build_request("GET", "/model", params=request.params(), headers=headers)
    try:
        response = None
        if sink.resume_from and sink.resume_meta is not None and sink.resume_meta.location:
            pinned = ctx.build_request("GET", sink.resume_meta.location, headers=model_request_headers(
                etag=None, resume_from=sink.resume_from, resume_etag=resume_etag))
            response = yield Send(pinned, sink)
            if response.status_code == 404:  # not on this replica (any more): the mutable URL, under If-Range
                response = None
        if response is None:
            response = yield Send(http_request, sink)
        if response.status_code == 304 and blob is not None:
            return blob
        if sink.resume_rejected:
            raise Retryable(errors.UnexpectedResponse(
                f"server resumed at {response.headers.get('content-range')!r}, asked for byte {sink.resume_from}"))
        if sink.headers is None:  # an error status: the body was JSON, read into memory
            if response.status_code == 416:  # our partial is longer than the model: start over
                cache.discard_partial(key)
                raise Retryable(error_from_response(response))
            raise failed_response(response)
        path = sink.finish()
    except httpx.RequestError as exc:  # dropped mid-body leaves the partial + validator for Range resume
        raise transport_error(exc) from exc
    except errors.ChecksumMismatch as exc:
        raise Retryable(exc) from None
    finally:
        sink.close()
    h = sink.headers
    cache.write_ref(key, Ref(sha256=h.sha256, etag=h.etag, size=path.stat().st_size, arch=h.arch, width=h.width,
                             dtype=h.dtype, params=h.params, checkpoint=h.checkpoint, url=str(http_request.url),
                             accuracy=h.accuracy))
    return path


def immutable_url(response: httpx.Response) -> str | None:
    """The URL whose bytes never change: ``Content-Location`` on /model, the request's own on /blobs."""
    location = response.headers.get("content-location")
    if location:
        return str(response.request.url.join(location))
    if "immutable" in response.headers.get("cache-control", ""):
        return str(response.request.url)
    return None


def describe(request: ModelRequest) -> str:
    selector = {"width": request.width, "max_params": request.max_params, "max_bytes": request.max_bytes,
                "min_accuracy": request.min_accuracy}
    chosen = ", ".join(f"{k}={v}" for k, v in selector.items() if v is not None)
    if request.family is not None:
        return f"the best of family {request.family} ({chosen or 'most accurate'}, {request.dtype})"
    return f"{request.arch} ({chosen or 'default width'}, {request.dtype})"
