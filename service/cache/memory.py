"""Embedded first tier: an in-process LRU of blobs bounded by their total size in bytes."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sized
from typing import Generic, TypeVar

V = TypeVar("V", bound=Sized)  # bytes, or a CachedBlob (whose len() is its bytes')


class MemoryLRU(Generic[V]):
    """Least-recently-used map ``key -> value`` holding at most ``max_bytes`` of values (``len`` each).

    Every operation is O(1) (an ``OrderedDict`` keeps recency order). A lock makes it safe to
    share between the event loop and worker threads; it is held only for dict operations.
    ``max_bytes=0`` disables the tier (it stores nothing), and a blob larger than the whole
    bound is not stored rather than evicting everything else for it.
    """

    def __init__(self, max_bytes: int):
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, V] = OrderedDict()
        self._nbytes = 0
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    @property
    def nbytes(self) -> int:
        """Total size of the stored values."""
        return self._nbytes

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def get(self, key: str) -> V | None:
        with self._lock:
            blob = self._entries.get(key)
            if blob is not None:
                self._entries.move_to_end(key)
            return blob

    def put(self, key: str, blob: V) -> bool:
        """Store ``blob`` as most recent, evicting the oldest entries to fit; False if it cannot fit."""
        size = len(blob)
        if size > self.max_bytes:
            return False
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._nbytes -= len(old)
            while self._nbytes + size > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._nbytes -= len(evicted)
            self._entries[key] = blob
            self._nbytes += size
            return True

    def discard(self, key: str) -> None:
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._nbytes -= len(old)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._nbytes = 0
