"""`Client` and `AsyncClient`: the same surface over one shared implementation.

Both build the same flows (`_pull`, `_flows`) and differ only in the driver that runs them
(`_effects.run_sync` / `run_async`) and in running onnxruntime off the event loop.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from neumeta_client import __version__
from neumeta_client._effects import run_async, run_sync
from neumeta_client._flows import Context, archs_flow
from neumeta_client._inference import ModelCard, Prediction, import_onnx_extra, open_session, run
from neumeta_client._protocol import ModelRequest
from neumeta_client._pull import Progress, pull_flow
from neumeta_client._retry import RetryPolicy
from neumeta_client.cache import ModelCache, Ref
from neumeta_client.constants import (
    DEFAULT_LOCK_TIMEOUT_S,
    DEFAULT_TIMEOUT,
    ENV_API_KEY,
    ENV_OFFLINE,
    cache_dir_from_env,
    env_flag,
)
from neumeta_client.housekeeping import DEFAULT_GRACE_S, CacheReport, PruneResult, prune_cache, scan_cache

if TYPE_CHECKING:
    import onnxruntime
    from typing_extensions import Self

TimeoutLike = float | tuple[float, float] | httpx.Timeout


class _ClientBase:
    def __init__(self, base_url: str, api_key: str | None = None, cache_dir: str | os.PathLike[str] | None = None,
                 timeout: TimeoutLike = DEFAULT_TIMEOUT, retries: int | RetryPolicy = 4,
                 offline: bool | None = None, lock_timeout: float = DEFAULT_LOCK_TIMEOUT_S):
        """
        Args:
            base_url: the service, e.g. ``"http://models.local:8000"``.
            api_key: sent as ``Authorization: Bearer``; defaults to ``$NEUMETA_API_KEY``.
            cache_dir: defaults to ``$NEUMETA_CACHE_DIR`` or ``~/.cache/neumeta``.
            timeout: seconds for everything, ``(connect, read)``, or an ``httpx.Timeout``.
            retries: extra attempts after a retryable failure, or a full `RetryPolicy` (also bounds total time).
            offline: serve only from the cache; defaults to ``$NEUMETA_OFFLINE``.
            lock_timeout: seconds to wait for another process downloading the same model.
        """
        self.base_url = httpx.URL(base_url)
        self.cache = ModelCache(cache_dir_from_env(cache_dir))
        self.retry = retries if isinstance(retries, RetryPolicy) else RetryPolicy(retries=retries)
        self.offline = env_flag(ENV_OFFLINE) if offline is None else offline
        self.lock_timeout = lock_timeout
        api_key = api_key if api_key is not None else os.environ.get(ENV_API_KEY) or None
        self._headers = {"User-Agent": f"neumeta-client/{__version__}"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        if isinstance(timeout, tuple):
            connect, read = timeout
            timeout = httpx.Timeout(read, connect=connect)
        self._timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self._sessions: dict[Path, tuple[onnxruntime.InferenceSession, ModelCard]] = {}

    def _context(self, http: httpx.Client | httpx.AsyncClient) -> Context:
        return Context(base_url=self.base_url, cache=self.cache, retry=self.retry, offline=self.offline,
                       lock_timeout_s=self.lock_timeout, build_request=http.build_request)

    def _session_for(self, path: Path, providers: list[str] | None) -> tuple[onnxruntime.InferenceSession, ModelCard]:
        if path not in self._sessions:  # blobs are immutable, so a session per blob path stays valid
            self._sessions[path] = open_session(path, providers)
        return self._sessions[path]

    def ref(self, arch: str | None = None, width: int | None = None, *, family: str | None = None,
            dtype: str = "float32", samples: int | None = None, max_params: int | None = None,
            max_bytes: int | None = None, min_accuracy: float | None = None) -> Ref | None:
        """What this request resolved to when it was last pulled (no network): ``arch``, ``width``,
        ``params``, ``size``, ``sha256`` and ``accuracy`` (the server's ``X-Model-Accuracy``), i.e. the
        server's choice for a ``family`` or budget request; None if it was never pulled here."""
        request = ModelRequest(arch, width, dtype, samples, max_params, max_bytes, family, min_accuracy)
        return self.cache.read_ref(request.cache_key(self.base_url))

    def verify(self) -> list[Path]:
        """Re-hash every cached blob; corrupt ones (disk rot, edits) are deleted and returned."""
        bad = self.cache.verify()
        for path in bad:
            self._sessions.pop(path, None)
        return bad

    def scan_cache(self) -> CacheReport:
        """Cached models (least recently used first), orphaned blobs, partial downloads, bytes on disk."""
        return scan_cache(self.cache)

    def prune_cache(self, *, max_size: int | None = None, unused_for_s: float | None = None,
                    partials: bool = False, grace_s: float = DEFAULT_GRACE_S, dry_run: bool = False) -> PruneResult:
        """Remove orphaned blobs, and models past ``unused_for_s`` or beyond ``max_size`` bytes (LRU);
        see `neumeta_client.housekeeping.prune_cache`."""
        result = prune_cache(self.cache, max_size=max_size, unused_for_s=unused_for_s, partials=partials,
                             grace_s=grace_s, dry_run=dry_run)
        for path in result.removed_blobs:
            self._sessions.pop(path, None)
        return result


class Client(_ClientBase):
    """Blocking client. Use as a context manager, or call `close()`."""

    def __init__(self, base_url: str, *, transport: httpx.BaseTransport | None = None, **kwargs: Any):
        """See `_ClientBase`; ``transport`` replaces httpx's (custom TLS, proxies, recording in tests)."""
        super().__init__(base_url, **kwargs)
        self._http = httpx.Client(base_url=self.base_url, headers=self._headers, timeout=self._timeout,
                                  transport=transport)

    def pull(self, arch: str | None = None, width: int | None = None, *, family: str | None = None,
             dtype: str = "float32", samples: int | None = None, max_params: int | None = None,
             max_bytes: int | None = None, min_accuracy: float | None = None,
             progress: Progress | None = None) -> Path:
        """Path of the verified ONNX file for this request, downloading or revalidating as needed.

        With ``arch``: give ``width``, or a budget (``max_params`` / ``max_bytes``: the server picks the
        largest width that fits), or none of them for the arch's default width.

        With ``family`` instead (e.g. ``pull(family="resnet20", max_bytes=600_000)``): the server picks
        the arch and width from its measured tables: the most accurate model within ``max_bytes`` (of
        ``dtype``) and ``max_params``, or, with ``min_accuracy`` (percent), the smallest file meeting it
        and any budget given. What it chose is in the cache's ref (`ModelCache.read_ref`: arch, width,
        accuracy: `ref` with the same arguments) and in the file's ``neumeta.*`` metadata.

        Raises:
            UnknownArch, WidthOutOfRange, InvalidParameter, NoModelFits, Unauthorized, Busy, ServerError,
            TransportError / RequestTimeout (after retries), ChecksumMismatch, OfflineError, CacheLockTimeout.
        """
        request = ModelRequest(arch, width, dtype, samples, max_params, max_bytes, family, min_accuracy)
        return run_sync(pull_flow(self._context(self._http), request, progress), self._http)

    def archs(self) -> dict[str, Any]:
        """The server's catalog (`GET /archs`): per arch id, width range, labels, preprocessing, params per width."""
        return run_sync(archs_flow(self._context(self._http)), self._http)

    def session(self, arch: str | None = None, width: int | None = None, *, providers: list[str] | None = None,
                **pull_kwargs: Any) -> onnxruntime.InferenceSession:
        """An onnxruntime session over the pulled model (needs the ``onnx`` extra)."""
        import_onnx_extra()  # fail before downloading anything
        return self._session_for(self.pull(arch, width, **pull_kwargs), providers)[0]

    def predict(self, images: Any, arch: str | None = None, width: int | None = None, *, layout: str | None = None,
                providers: list[str] | None = None, **pull_kwargs: Any) -> Prediction:
        """Logits and labels for raw-pixel images, preprocessed as the model's metadata says."""
        import_onnx_extra()
        session, card = self._session_for(self.pull(arch, width, **pull_kwargs), providers)
        return run(session, card, images, layout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(_ClientBase):
    """asyncio client with the same methods as `Client`, as coroutines."""

    def __init__(self, base_url: str, *, transport: httpx.AsyncBaseTransport | None = None, **kwargs: Any):
        super().__init__(base_url, **kwargs)
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=self._headers, timeout=self._timeout,
                                       transport=transport)

    async def pull(self, arch: str | None = None, width: int | None = None, *, family: str | None = None,
                   dtype: str = "float32", samples: int | None = None, max_params: int | None = None,
                   max_bytes: int | None = None, min_accuracy: float | None = None,
                   progress: Progress | None = None) -> Path:
        """See `Client.pull`."""
        request = ModelRequest(arch, width, dtype, samples, max_params, max_bytes, family, min_accuracy)
        return await run_async(pull_flow(self._context(self._http), request, progress), self._http)

    async def archs(self) -> dict[str, Any]:
        """See `Client.archs`."""
        return await run_async(archs_flow(self._context(self._http)), self._http)

    async def session(self, arch: str | None = None, width: int | None = None, *, providers: list[str] | None = None,
                      **pull_kwargs: Any) -> onnxruntime.InferenceSession:
        """See `Client.session`; the session is built in a worker thread."""
        import_onnx_extra()
        path = await self.pull(arch, width, **pull_kwargs)
        return (await asyncio.to_thread(self._session_for, path, providers))[0]

    async def predict(self, images: Any, arch: str | None = None, width: int | None = None, *,
                      layout: str | None = None, providers: list[str] | None = None,
                      **pull_kwargs: Any) -> Prediction:
        """See `Client.predict`; inference runs in a worker thread."""
        import_onnx_extra()
        path = await self.pull(arch, width, **pull_kwargs)
        session, card = await asyncio.to_thread(self._session_for, path, providers)
        return await asyncio.to_thread(run, session, card, images, layout)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
