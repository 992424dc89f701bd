"""How a blob is stored in Redis: whole, with its length and SHA-256, so every read can check it.

Layout of a stored value (48-byte header, then the payload)::

    b"NMCACHE1"         8 bytes  magic: names the format, rejects foreign values
    sha256(payload)    32 bytes
    len(payload)        8 bytes  unsigned big-endian
    payload             len bytes

A truncated, extended, bit-flipped or foreign value fails ``open_envelope`` with ``CorruptEntry``;
the Redis tier then deletes it and treats the read as a miss, so a damaged entry is never served.
"""

from __future__ import annotations

import hashlib
import struct

MAGIC = b"NMCACHE1"
_LENGTH = struct.Struct(">Q")
HEADER_BYTES = len(MAGIC) + 32 + _LENGTH.size


class CorruptEntry(ValueError):
    """A stored value is not a whole, intact envelope."""


def seal(payload: bytes, sha256: str | None = None) -> bytes:
    """The stored value of ``payload``; ``sha256`` (hex), when the caller already knows it, saves a hash."""
    digest = bytes.fromhex(sha256) if sha256 is not None else hashlib.sha256(payload).digest()
    return b"".join((MAGIC, digest, _LENGTH.pack(len(payload)), payload))


def open_envelope(value: bytes) -> bytes:
    """The payload of a sealed value, after checking magic, length and SHA-256."""
    return open_sealed(value)[0]


def open_sealed(value: bytes) -> tuple[bytes, str]:
    """``(payload, sha256 hex)`` of a sealed value, after checking magic, length and SHA-256 (the one
    hash of the read: the checked digest is the payload's, so nobody needs to hash it again)."""
    if len(value) < HEADER_BYTES or not value.startswith(MAGIC):
        raise CorruptEntry(f"not a cache envelope ({len(value)} bytes, bad magic or short header)")
    digest = value[len(MAGIC) : len(MAGIC) + 32]
    (length,) = _LENGTH.unpack_from(value, len(MAGIC) + 32)
    payload = value[HEADER_BYTES:]
    if len(payload) != length:
        raise CorruptEntry(f"length mismatch: header says {length} bytes, value holds {len(payload)}")
    if hashlib.sha256(payload).digest() != digest:
        raise CorruptEntry("SHA-256 mismatch")
    return payload, digest.hex()
