"""SHA-256 digests of served blobs: cheap ETags for hits, 304s that outlive the blob, and the
index behind the content-addressed URLs (``/blobs/sha256/<hex>``).

Hashing a megabyte per cache hit would cost about as much as the rest of the request, so the
digest of a recently served blob is kept with the blob and reused while the cache hands out the
same ``bytes`` object (an identity check: bytes are immutable, so a stale digest is impossible).

A cache key names one immutable file, so its digest is also kept on its own, in a much longer
index that holds no blobs (about 350 bytes an entry, 6 MB when full). An edge device revalidating a model the
cache has since evicted then gets its 304 from the index, without a generation; on a replica
that never served the key, the request generates as before. The same index, read the other way
(digest -> what made it), lets ``/blobs/sha256/<hex>`` regenerate an evicted blob from its recipe.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True)
class Recipe:
    """What a served blob was generated from: enough to make the same bytes again."""

    arch: str
    checkpoint_sha: str  # the full SHA-256: a replica on another checkpoint must not answer for it
    width: int
    dtype: str
    samples: int

    def to_json(self, key: str) -> bytes:
        """The record other replicas read (with the cache key, which names the numerics too)."""
        return json.dumps({"key": key, **self.__dict__}).encode()

    @classmethod
    def from_json(cls, data: bytes) -> tuple[str, Recipe] | None:
        try:
            fields = json.loads(data)
            return str(fields.pop("key")), cls(**fields)
        except (ValueError, TypeError, KeyError, AttributeError):
            return None  # written by another version: as if absent


class DigestMemo:
    def __init__(self, size: int = 64, known_size: int = 16_384) -> None:
        self._size, self._known_size = size, known_size
        self._entries: OrderedDict[str, tuple[bytes, str]] = OrderedDict()  # key -> (blob, digest)
        self._known: OrderedDict[str, str] = OrderedDict()  # key -> digest, blobs long gone included
        self._recipes: OrderedDict[str, tuple[str, Recipe]] = OrderedDict()  # digest -> (key, recipe)
        self._lock = threading.Lock()  # the blob route and the model route may run in threads

    def sha256(self, key: str, blob: bytes, recipe: Recipe | None = None) -> str:
        """The digest of ``blob``, served under ``key``; remembered for ``known`` and ``recipe_of``."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0] is blob:
                self._entries.move_to_end(key)
                return self._remember(key, entry[1], recipe)
        digest = hashlib.sha256(blob).hexdigest()  # outside the lock: a megabyte takes ~2 ms
        with self._lock:
            self._entries[key] = (blob, digest)
            if len(self._entries) > self._size:
                self._entries.popitem(last=False)
            return self._remember(key, digest, recipe)

    def _remember(self, key: str, digest: str, recipe: Recipe | None) -> str:
        _put_bounded(self._known, key, digest, self._known_size)
        if recipe is not None:
            _put_bounded(self._recipes, digest, (key, recipe), self._known_size)
        return digest

    def known(self, key: str) -> str | None:
        """The digest this process last served under ``key``, if it still remembers one."""
        return self._known.get(key)

    def recipe_of(self, digest: str) -> tuple[str, Recipe] | None:
        """``(cache key, recipe)`` of a digest this process served, if it still remembers it."""
        with self._lock:
            return self._recipes.get(digest)


def _put_bounded(index: OrderedDict, key: str, value: object, size: int) -> None:
    index[key] = value
    index.move_to_end(key)
    if len(index) > size:
        index.popitem(last=False)
