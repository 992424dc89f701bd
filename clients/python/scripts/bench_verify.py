"""What re-hashing a cached blob before a pull returns it costs (docs/BENCHMARKS.md, "Client verification").

Times `ModelCache.cached_blob` (the size check) against `ModelCache.verified_blob` (size + SHA-256)
on random files of model sizes, page cache warm. Run: ``python clients/python/scripts/bench_verify.py``.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import timeit
from functools import partial
from pathlib import Path

from neumeta_client.cache import ModelCache, Ref

SIZES = (160_000, 1_100_000, 4_400_000)  # resnet20 w8 float32, w64 float32, a 4x larger model


def main() -> None:
    cache = ModelCache(Path(tempfile.mkdtemp(prefix="verify-cost-")))
    for size in SIZES:
        body = os.urandom(size)
        sha = hashlib.sha256(body).hexdigest()
        path = cache.blob_path(sha)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        ref = Ref(sha256=sha, etag=f'"{sha}"', size=size)
        calls = 200
        cheap = min(timeit.repeat(partial(cache.cached_blob, ref), number=calls, repeat=5)) / calls
        full = min(timeit.repeat(partial(cache.verified_blob, ref), number=calls, repeat=5)) / calls
        print(f"{size:>9} B  size check {cheap * 1e3:.3f} ms  verified {full * 1e3:.3f} ms  "
              f"added {(full - cheap) * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
