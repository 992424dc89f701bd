"""What the cache holds for a key: a model's bytes and their SHA-256, computed once when it was made.

The digest travels with the bytes through both tiers (Redis keeps it in the envelope's header, checked
on every read), so the ETag, ``X-Model-Sha256`` and the content-addressed URL never hash a body again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CachedBlob:
    data: bytes
    sha256: str  # hex digest of ``data``

    @classmethod
    def of(cls, data: bytes) -> CachedBlob:
        """``data`` with its digest: for bytes that arrive without one."""
        return cls(data, hashlib.sha256(data).hexdigest())

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:  # the default would print the whole blob
        return f"CachedBlob({len(self.data)} bytes, sha256={self.sha256[:12]})"
