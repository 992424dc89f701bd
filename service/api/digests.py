"""SHA-256 digests of served blobs: cheap ETags for hits, and 304s that outlive the blob.

Hashing a megabyte per cache hit would cost about as much as the rest of the request, so the
digest of a recently served blob is kept with the blob and reused while the cache hands out the
same ``bytes`` object (an identity check: bytes are immutable, so a stale digest is impossible).

A cache key names one immutable file, so its digest is also kept on its own, in a much longer
index that holds no blobs (about 350 bytes an entry, 6 MB when full). An edge device revalidating a model the
cache has since evicted then gets its 304 from the index, without a generation; on a replica
that never served the key, the request generates as before.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict


class DigestMemo:
    def __init__(self, size: int = 64, known_size: int = 16_384) -> None:
        self._size, self._known_size = size, known_size
        self._entries: OrderedDict[str, tuple[bytes, str]] = OrderedDict()  # key -> (blob, digest)
        self._known: OrderedDict[str, str] = OrderedDict()  # key -> digest, blobs long gone included

    def sha256(self, key: str, blob: bytes) -> str:
        """The digest of ``blob``, served under ``key``; remembered for ``known``."""
        entry = self._entries.get(key)
        if entry is not None and entry[0] is blob:
            self._entries.move_to_end(key)
            digest = entry[1]
        else:
            digest = hashlib.sha256(blob).hexdigest()
            self._entries[key] = (blob, digest)
            if len(self._entries) > self._size:
                self._entries.popitem(last=False)
        self._known[key] = digest
        self._known.move_to_end(key)
        if len(self._known) > self._known_size:
            self._known.popitem(last=False)
        return digest

    def known(self, key: str) -> str | None:
        """The digest this process last served under ``key``, if it still remembers one."""
        return self._known.get(key)
