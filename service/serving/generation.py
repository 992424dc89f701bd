"""Generation off the event loop: a bounded worker pool with honest admission control.

A generation (hypernetwork pass + ONNX export) is CPU/GPU bound and releases the GIL inside
torch, so it runs in a ``ThreadPoolExecutor`` of ``max_concurrent_generations`` threads. At most
``max_queued_generations`` more may wait for a thread; beyond that a request is refused at once
with ``busy`` (503 + Retry-After) instead of piling up.

A job admitted here always runs to completion, even when the request that asked for it stops
waiting (``service.serving.fetch`` bounds the *wait* by ``generation_timeout_s``): its result is cached,
so a client that comes back after Retry-After gets it without a second generation. Admission
therefore refuses at once, rather than queue work nobody will wait for, when the expected wait
for a thread is already longer than the timeout. Expected waits come from a moving average of
recent generation times, so Retry-After says when a slot (or a running job's result) should be
ready, not a constant.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from service.errors import Busy
from service.metrics import Metrics

T = TypeVar("T")

SMOOTHING = 0.3  # weight of the newest generation time in the moving average


class GenerationPool:
    def __init__(
        self, workers: int, max_queued: int, timeout_s: float, retry_after_s: int, metrics: Metrics,
        initializer: Callable[[], None] | None = None,
    ) -> None:
        # initializer runs once in each worker thread: torch's intra-op thread count is per OS thread
        # (OpenMP), so a setting made on the event loop's thread does not reach the workers.
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="neumeta-gen",
                                            initializer=initializer)
        self._workers = workers
        self._capacity = workers + max_queued
        self._timeout_s = timeout_s
        self._retry_after_s = retry_after_s
        self._metrics = metrics
        self._lock = threading.Lock()  # guards what follows: callbacks run on worker threads
        self._admitted = 0  # queued + running
        self._started: dict[str, float] = {}  # running job's key -> monotonic start
        self._typical_s: float | None = None  # moving average of generation times; None until one ends

    @property
    def admitted(self) -> int:
        return self._admitted

    # -- estimates ------------------------------------------------------------------------------

    def slot_wait_s(self) -> float:
        """Expected seconds until a job admitted now would start (0 while a thread is free)."""
        with self._lock:
            return self._slot_wait_locked(time.monotonic())

    def _slot_wait_locked(self, now: float, skip_queued: int = 0) -> float:
        typical = self._typical_s
        if typical is None:
            return 0.0  # nothing measured yet: no grounds to refuse
        free_at = [max(0.0, typical - (now - start)) for start in self._started.values()]
        free_at += [0.0] * (self._workers - len(free_at))
        heapq.heapify(free_at)
        for _ in range(self._admitted - len(self._started) - skip_queued):  # queued jobs take threads in turn
            heapq.heappush(free_at, heapq.heappop(free_at) + typical)
        return free_at[0]

    def retry_after_s(self, key: str | None = None) -> int:
        """Seconds until ``key``'s result should be ready (its job running or queued), else until a
        slot frees; the configured NEUMETA_RETRY_AFTER_S while nothing has been measured."""
        with self._lock:
            now, typical = time.monotonic(), self._typical_s
            if typical is None:
                return self._retry_after_s
            start = self._started.get(key) if key is not None else None
            if start is not None:
                eta = typical - (now - start)
            elif key is not None:  # queued (taken as the last in line): wait for a thread, then run
                eta = self._slot_wait_locked(now, skip_queued=1) + typical
            else:
                eta = self._slot_wait_locked(now)
        return max(1, math.ceil(eta))

    # -- running --------------------------------------------------------------------------------

    def _admit(self) -> None:
        with self._lock:
            if self._admitted >= self._capacity:
                raise Busy(f"all {self._capacity} generation slots are taken; retry later",
                           retry_after=self._refusal_retry_after_locked())
            wait = self._slot_wait_locked(time.monotonic())
            if wait > self._timeout_s:
                raise Busy(f"a generation slot is expected in {wait:.1f}s, past the {self._timeout_s:g}s "
                           "generation timeout; retry later", retry_after=max(1, math.ceil(wait)))
            self._admitted += 1
        self._metrics.generation_queue.inc()

    def _refusal_retry_after_locked(self) -> int:
        if self._typical_s is None:
            return self._retry_after_s
        return max(1, math.ceil(self._slot_wait_locked(time.monotonic())))

    def _release(self, _future: Future[Any] | None) -> None:  # a done-callback: any job's future
        with self._lock:
            self._admitted -= 1

    def _run(self, fn: Callable[[], T], key: str) -> T:
        self._metrics.generation_queue.dec()
        self._metrics.generations_in_flight.inc()
        started = time.monotonic()
        with self._lock:
            self._started[key] = started
        try:
            return fn()
        finally:
            elapsed = time.monotonic() - started
            with self._lock:
                self._started.pop(key, None)
                previous = self._typical_s
                self._typical_s = elapsed if previous is None else previous + SMOOTHING * (elapsed - previous)
            self._metrics.generations_in_flight.dec()

    async def run(self, fn: Callable[[], T], key: str | None = None) -> T:
        """Run ``fn`` on a worker thread to completion; ``Busy`` at once when it cannot be admitted.

        ``key`` names the job for ``retry_after_s``. Cancelling the caller does not stop a job that
        has started (its result is what a retry will find in the cache); it drops one still queued.
        """
        self._admit()
        key = key if key is not None else f"job-{id(fn)}"
        try:
            future = self._executor.submit(self._run, fn, key)
        except BaseException:
            self._metrics.generation_queue.dec()
            self._release(None)
            raise
        future.add_done_callback(self._release)
        try:
            return await asyncio.wrap_future(future)
        finally:
            # True only for a job that never started (its caller was cancelled while it was queued):
            # it leaves the queue without passing through _run.
            if future.cancel():
                self._metrics.generation_queue.dec()

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
