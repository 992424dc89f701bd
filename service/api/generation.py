"""Generation off the event loop: a bounded worker pool with admission control and a timeout.

A generation (hypernetwork pass + ONNX export) is CPU/GPU bound and releases the GIL inside
torch, so it runs in a ``ThreadPoolExecutor`` of ``max_concurrent_generations`` threads. At most
``max_queued_generations`` more may wait for a thread; beyond that a request is refused at once
with ``busy`` (503 + Retry-After) instead of piling up. A slot is held until the *thread* finishes,
not until the request gives up, so a timed-out generation still counts against the bound.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from service.errors import Busy
from service.metrics import Metrics

T = TypeVar("T")


class GenerationPool:
    def __init__(
        self, workers: int, max_queued: int, timeout_s: float, retry_after_s: int, metrics: Metrics
    ) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="neumeta-gen")
        self._capacity = workers + max_queued
        self._timeout_s = timeout_s
        self._retry_after_s = retry_after_s
        self._metrics = metrics
        self._lock = threading.Lock()  # guards the counters: callbacks run on worker threads
        self._admitted = 0  # queued + running

    @property
    def admitted(self) -> int:
        return self._admitted

    def _admit(self) -> None:
        with self._lock:
            if self._admitted >= self._capacity:
                raise Busy(
                    f"all {self._capacity} generation slots are taken; retry in {self._retry_after_s}s",
                    retry_after=self._retry_after_s,
                )
            self._admitted += 1
        self._metrics.generation_queue.inc()

    def _release(self, _future: Future) -> None:
        with self._lock:
            self._admitted -= 1

    def _run(self, fn: Callable[[], T]) -> T:
        self._metrics.generation_queue.dec()
        self._metrics.generations_in_flight.inc()
        try:
            return fn()
        finally:
            self._metrics.generations_in_flight.dec()

    async def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on a worker thread; ``Busy`` when full or when it exceeds the timeout."""
        self._admit()
        try:
            future = self._executor.submit(self._run, fn)
        except BaseException:
            self._metrics.generation_queue.dec()
            self._release(None)  # type: ignore[arg-type]
            raise
        future.add_done_callback(self._release)
        started = time.monotonic()
        try:
            # wait_for cancels the wrapper on timeout, which cancels the job if it is still queued.
            return await asyncio.wait_for(asyncio.wrap_future(future), self._timeout_s)
        except asyncio.TimeoutError:
            raise Busy(
                f"generation did not finish within {self._timeout_s:g}s "
                f"(waited {time.monotonic() - started:.1f}s); retry in {self._retry_after_s}s",
                retry_after=self._retry_after_s,
            ) from None
        finally:
            # True only for a job that never started (timed out or the caller was cancelled while
            # it was queued): it leaves the queue without passing through _run.
            if future.cancel():
                self._metrics.generation_queue.dec()

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
