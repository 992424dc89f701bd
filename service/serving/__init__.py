"""Serving below HTTP: the request path from a resolved request to cached bytes.

- ``request``: ``ModelRequest``, a request resolved once (checkpoint, width, dtype, K, backend)
- ``selection``: a parsed ``/model`` query -> ``ModelRequest`` (widths, budgets, families)
- ``pipeline``: ``ModelRequest`` -> ``ModelBlob`` (generate, export, hash once)
- ``fetch``: the cache in front of the pipeline, on the worker pool, recording digests
- ``generation``: the bounded worker pool with admission control (``busy``)
- ``digests``: the digest index (304s after eviction, ``/blobs/sha256/<hex>``)
- ``catalog``: checkpoints by catalog id
- ``server``: the ``neumeta serve`` verb (uvicorn)

Nothing is imported here, so ``neumeta serve`` can check its settings before torch loads.
"""
