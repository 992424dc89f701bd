"""The local model cache: content-addressed blobs, a refs index, resumable partials, per-key locks.

::

    <cache_dir>/                          (NEUMETA_CACHE_DIR, default ~/.cache/neumeta)
    ├── blobs/
    │   └── <sha256>                      model bytes; only ever complete and verified
    ├── refs/
    │   └── <key>.json                    request -> {"sha256", "etag", "size", "width", ...}
    ├── incomplete/
    │   ├── <key>.incomplete              body of an interrupted download (may be partial)
    │   └── <key>.json                    its validator: {"etag", "sha256", "length"} for Range resume
    ├── catalogs/
    │   └── <host>.json                   last GET /archs answer (served when offline)
    └── locks/
        └── <key>.lock                    one download per key at a time, across processes

``<key>`` names a request: server host, arch, width (or budget), dtype and samples, plus a short
hash of the exact query. Blobs are shared between keys that resolve to the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

_BLOB_NAME = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Ref:
    """What a request resolved to the last time the server answered it."""

    sha256: str
    etag: str
    size: int
    arch: str | None = None
    width: int | None = None
    dtype: str | None = None
    params: int | None = None
    checkpoint: str | None = None
    url: str | None = None
    accuracy: str | None = None  # X-Model-Accuracy: measured accuracy, split, dtype measured as


@dataclass(frozen=True)
class PartialMeta:
    """Validator of an `.incomplete` file: resume only if the server still serves this etag."""

    etag: str
    sha256: str
    length: int | None
    # The server's immutable URL for these bytes (Content-Location), resumed from first: its bytes
    # cannot change under the partial file, whatever happens to the checkpoint meanwhile.
    location: str | None = None


class ModelCache:
    def __init__(self, root: Path):
        self.root = Path(root)

    # paths

    def blob_path(self, sha256: str) -> Path:
        return self.root / "blobs" / sha256

    def ref_path(self, key: str) -> Path:
        return self.root / "refs" / f"{key}.json"

    def partial_path(self, key: str) -> Path:
        return self.root / "incomplete" / f"{key}.incomplete"

    def partial_meta_path(self, key: str) -> Path:
        return self.root / "incomplete" / f"{key}.json"

    def lock(self, key: str) -> FileLock:
        path = self.root / "locks" / f"{key}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        # A fresh non-thread-local instance per pull: two pulls in one process (threads or
        # coroutines) then exclude each other through flock like two processes do.
        return FileLock(str(path), thread_local=False)

    # refs

    def read_ref(self, key: str) -> Ref | None:
        data = _read_json(self.ref_path(key))
        try:
            return Ref(**data) if data else None
        except TypeError:  # written by another version: treat as absent, it will be rewritten
            return None

    def write_ref(self, key: str, ref: Ref) -> None:
        _atomic_write_json(self.ref_path(key), asdict(ref))

    def mark_used(self, key: str) -> None:
        """Stamp the ref's mtime: `housekeeping.prune_cache` evicts the least recently used first."""
        try:
            os.utime(self.ref_path(key))
        except OSError:  # a read-only cache still serves; it only loses the recency
            pass

    def cached_blob(self, ref: Ref | None) -> Path | None:
        """The blob a ref points to, if present with the right size (a cheap check; `verify` hashes)."""
        if ref is None:
            return None
        path = self.blob_path(ref.sha256)
        try:
            return path if path.stat().st_size == ref.size else None
        except OSError:
            return None

    def verified_blob(self, ref: Ref | None) -> Path | None:
        """`cached_blob`, if its bytes still hash to the ref's SHA-256; a rotted blob (SD cards and
        eMMC flip bits without changing the size) is deleted and reported as absent: a miss."""
        path = self.cached_blob(ref)
        if path is None or ref is None:
            return None
        if sha256_file(path) != ref.sha256:
            path.unlink(missing_ok=True)
            return None
        return path

    # partial downloads

    def read_partial(self, key: str) -> tuple[int, PartialMeta] | None:
        """Bytes already on disk and their validator, or None (and no stray files) if not resumable."""
        data = _read_json(self.partial_meta_path(key))
        try:
            meta = PartialMeta(**data) if data else None
            size = self.partial_path(key).stat().st_size
        except (TypeError, OSError):
            meta = None
        if meta is None:
            self.discard_partial(key)
            return None
        return size, meta

    def write_partial_meta(self, key: str, meta: PartialMeta) -> None:
        _atomic_write_json(self.partial_meta_path(key), asdict(meta))

    def discard_partial(self, key: str) -> None:
        for path in (self.partial_path(key), self.partial_meta_path(key)):
            path.unlink(missing_ok=True)

    def promote(self, key: str, sha256: str) -> Path:
        """Move a verified partial into blobs/ atomically (same filesystem), then drop its validator."""
        blob = self.blob_path(sha256)
        blob.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.partial_path(key), blob)
        self.partial_meta_path(key).unlink(missing_ok=True)
        return blob

    # catalogs

    def read_catalog(self, host: str) -> dict[str, Any] | None:
        return _read_json(self.root / "catalogs" / f"{_safe(host)}.json")

    def write_catalog(self, host: str, catalog: dict[str, Any]) -> None:
        _atomic_write_json(self.root / "catalogs" / f"{_safe(host)}.json", catalog)

    # integrity

    def verify(self) -> list[Path]:
        """Hash every blob; delete and return those whose bytes do not match their name."""
        bad = []
        for path in sorted((self.root / "blobs").glob("*")):
            if not _BLOB_NAME.match(path.name) or sha256_file(path) != path.name:
                path.unlink(missing_ok=True)
                bad.append(path)
        return bad


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _atomic_write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
