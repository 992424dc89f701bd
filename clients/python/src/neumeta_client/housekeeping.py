"""Seeing and bounding what the local cache holds (huggingface_hub's ``scan-cache``/``delete-cache``).

A pull never deletes: when the server ships a new checkpoint, a key's ref moves to the new blob
and the old blob stays on disk, referenced by nothing; a download abandoned for good leaves its
partial in ``incomplete/``. On an edge device with a small disk both add up. `scan_cache` reports
models, orphaned blobs and partials with their sizes; `prune_cache` removes orphans and, when
asked, least-recently-used models past a size budget or an age, and stale partials.

Safety against pulls running at the same time (other processes, other threads):
- a model or partial is removed only under its key's download lock, taken without waiting, so a
  key being pulled right now is skipped, never cut from under its writer;
- a model used within ``grace_s`` is kept (its caller may be opening the file), and a blob is
  removed only when no remaining ref names it and it has not been written within ``grace_s``
  (a pull promotes its blob before it writes the ref that names it).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from filelock import Timeout

from neumeta_client.cache import ModelCache, Ref

DEFAULT_GRACE_S = 3600.0


@dataclass(frozen=True)
class CachedModel:
    """One request key, what it resolved to and when a pull last used it."""

    key: str
    ref: Ref
    present: bool  # the blob is on disk with the right size
    last_used: float  # epoch seconds: the ref's mtime, touched by every pull that serves it


@dataclass(frozen=True)
class CacheReport:
    root: Path
    models: tuple[CachedModel, ...]  # least recently used first
    orphan_blobs: tuple[Path, ...]  # named by no ref: superseded by a newer checkpoint, or left by a crash
    partials: tuple[Path, ...]  # bodies of interrupted downloads
    size_on_disk: int  # blobs (each counted once) + partials, bytes
    orphan_bytes: int  # of size_on_disk: what `prune` frees without options
    partial_bytes: int  # of size_on_disk


@dataclass
class PruneResult:
    removed_models: list[str] = field(default_factory=list)  # keys
    removed_blobs: list[Path] = field(default_factory=list)
    removed_partials: list[Path] = field(default_factory=list)
    skipped_busy: list[str] = field(default_factory=list)  # keys locked by a pull in progress
    freed_bytes: int = 0
    dry_run: bool = False


def scan_cache(cache: ModelCache) -> CacheReport:
    """What the cache holds; reads only (no locks, nothing changed)."""
    models = []
    for path in _files(cache.root / "refs", "*.json"):
        key = path.name[: -len(".json")]
        ref = cache.read_ref(key)
        mtime = _mtime(path)
        if ref is not None and mtime is not None:
            models.append(CachedModel(key, ref, cache.cached_blob(ref) is not None, mtime))
    models.sort(key=lambda m: m.last_used)
    named = {m.ref.sha256 for m in models}
    blobs = _files(cache.root / "blobs", "*")
    orphans = tuple(p for p in blobs if p.name not in named)
    partials = tuple(_files(cache.root / "incomplete", "*.incomplete"))
    orphan_bytes = sum(_size(p) for p in orphans)
    partial_bytes = sum(_size(p) for p in partials)
    size = sum(_size(p) for p in blobs if p.name in named) + orphan_bytes + partial_bytes
    return CacheReport(cache.root, tuple(models), orphans, partials, size, orphan_bytes, partial_bytes)


def prune_cache(cache: ModelCache, *, max_size: int | None = None, unused_for_s: float | None = None,
                partials: bool = False, grace_s: float = DEFAULT_GRACE_S, dry_run: bool = False,
                now: float | None = None) -> PruneResult:
    """Free space: orphaned blobs always; models unused for ``unused_for_s`` seconds, then the least
    recently used ones until the cache fits in ``max_size`` bytes; with ``partials``, interrupted
    downloads. Nothing used or written within ``grace_s`` seconds is touched. With ``dry_run``
    nothing is removed and the result says what would be."""
    now = time.time() if now is None else now
    result = PruneResult(dry_run=dry_run)
    report = scan_cache(cache)
    size = report.size_on_disk
    refs_by_blob: dict[str, set[str]] = {}
    for model in report.models:
        refs_by_blob.setdefault(model.ref.sha256, set()).add(model.key)

    def remove_blob(path: Path) -> None:
        nonlocal size
        mtime = _mtime(path)
        if mtime is None or now - mtime < grace_s:  # just promoted: its ref may be about to be written
            return
        freed = _size(path)
        if not dry_run:
            path.unlink(missing_ok=True)
        result.removed_blobs.append(path)
        result.freed_bytes += freed
        size -= freed

    for blob in report.orphan_blobs:
        remove_blob(blob)

    if partials:
        for path in report.partials:
            key = path.name[: -len(".incomplete")]
            mtime = _mtime(path)
            if mtime is None or now - mtime < grace_s:
                continue
            with _try_lock(cache, key) as locked:
                if not locked:
                    result.skipped_busy.append(key)
                    continue
                freed = _size(path)
                if not dry_run:
                    cache.discard_partial(key)
                result.removed_partials.append(path)
                result.freed_bytes += freed
                size -= freed

    for model in report.models:  # least recently used first
        if now - model.last_used < grace_s:  # used moments ago: maybe being opened right now
            continue
        stale = unused_for_s is not None and now - model.last_used >= unused_for_s
        over = max_size is not None and size > max_size
        if not (stale or over):
            continue
        with _try_lock(cache, model.key) as locked:
            if not locked:
                result.skipped_busy.append(model.key)
                continue
            if not dry_run:
                cache.ref_path(model.key).unlink(missing_ok=True)
            result.removed_models.append(model.key)
            sharers = refs_by_blob[model.ref.sha256]
            sharers.discard(model.key)
            if not sharers:  # the last key naming this blob
                remove_blob(cache.blob_path(model.ref.sha256))
    return result


@contextmanager
def _try_lock(cache: ModelCache, key: str) -> Iterator[bool]:
    lock = cache.lock(key)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


def _files(directory: Path, pattern: str) -> list[Path]:
    # Temporary files of atomic writes start with a dot; they are not entries yet.
    return sorted(p for p in directory.glob(pattern) if p.is_file() and not p.name.startswith("."))


def _mtime(path: Path) -> float | None:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
