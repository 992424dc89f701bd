"""The digests this process served: 304s that outlive the blob, and the index behind the
content-addressed URLs (``/blobs/sha256/<hex>``).

Every digest arrives with its blob (``service.cache.CachedBlob``: hashed once, when the blob was
made, or checked once when it was read from Redis), so nothing here hashes. A cache key names one
immutable file, so its digest is kept in an index that holds no blobs (about 350 bytes an entry,
6 MB when full). An edge device revalidating a model the cache has since evicted then gets its 304
from the index, without a generation; on a replica that never served the key, the request
generates as before. The same index, read the other way (digest -> what made it), lets
``/blobs/sha256/<hex>`` regenerate an evicted blob from its recipe.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TypeVar

from service.cache import cache_key
from service.export import GENERATOR_VERSION

V = TypeVar("V")


@dataclass(frozen=True)
class Recipe:
    """What a served blob was generated from: enough to make the same bytes again."""

    arch: str
    checkpoint_sha: str  # the full SHA-256: a replica on another checkpoint must not answer for it
    width: int
    dtype: str
    samples: int

    def cache_key(self, numerics: str) -> str:
        """Its key in the blob cache on a replica whose backend makes ``numerics``."""
        return cache_key(GENERATOR_VERSION, self.checkpoint_sha, numerics, self.arch, self.width, self.dtype,
                         self.samples)

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


class DigestIndex:
    def __init__(self, known_size: int = 16_384) -> None:
        self._known_size = known_size
        self._known: OrderedDict[str, str] = OrderedDict()  # key -> digest, blobs long gone included
        self._recipes: OrderedDict[str, tuple[str, Recipe]] = OrderedDict()  # digest -> (key, recipe)
        self._lock = threading.Lock()  # the blob route and the model route may run in threads

    def remember(self, key: str, digest: str, recipe: Recipe) -> None:
        """``digest`` was served under ``key``, made from ``recipe``: for ``known`` and ``recipe_of``."""
        with self._lock:
            _put_bounded(self._known, key, digest, self._known_size)
            _put_bounded(self._recipes, digest, (key, recipe), self._known_size)

    def known(self, key: str) -> str | None:
        """The digest this process last served under ``key``, if it still remembers one."""
        return self._known.get(key)

    def recipe_of(self, digest: str) -> tuple[str, Recipe] | None:
        """``(cache key, recipe)`` of a digest this process served, if it still remembers it."""
        with self._lock:
            return self._recipes.get(digest)


def _put_bounded(index: OrderedDict[str, V], key: str, value: V, size: int) -> None:
    index[key] = value
    index.move_to_end(key)
    if len(index) > size:
        index.popitem(last=False)
