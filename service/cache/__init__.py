"""Blob cache: embedded byte-bounded LRU in front of Redis, with single-flight generation."""

from service.cache.blob_cache import BlobCache, CacheStatus, cache_key
from service.cache.entry import CachedBlob
from service.cache.memory import MemoryLRU

__all__ = ["BlobCache", "CacheStatus", "CachedBlob", "MemoryLRU", "cache_key"]
