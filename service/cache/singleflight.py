"""In-process single-flight: concurrent calls for one key share one run of the work."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """A map ``key -> asyncio.Task`` of the work in flight for that key.

    The first caller (the leader) starts the work as its own task; later callers await the same
    task. The work's result or exception goes to every caller, and the key is freed the moment
    the work ends, so a failure is never cached: the next call starts afresh. Callers await the
    task through ``asyncio.shield``: a caller that is cancelled (client went away) leaves, and the
    work goes on for the others and still fills the cache.
    """

    def __init__(self) -> None:
        self._flights: dict[str, asyncio.Task[T]] = {}

    def __len__(self) -> int:
        return len(self._flights)

    def __contains__(self, key: str) -> bool:
        return key in self._flights

    async def run(self, key: str, work: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """``(result, joined)``: ``joined`` is False for the leader, True for callers that waited."""
        task = self._flights.get(key)
        joined = task is not None
        if task is None:
            task = asyncio.get_running_loop().create_task(self._lead(key, work))
            self._flights[key] = task
            task.add_done_callback(_consume_exception)
        return await asyncio.shield(task), joined

    async def _lead(self, key: str, work: Callable[[], Awaitable[T]]) -> T:
        try:
            return await work()
        finally:
            # Freed before the task completes: a caller arriving after this starts a new run.
            if self._flights.get(key) is asyncio.current_task():
                del self._flights[key]


def _consume_exception(task: asyncio.Task[object]) -> None:
    # If every caller was cancelled, nobody reads the exception; avoid "never retrieved" noise.
    if not task.cancelled():
        task.exception()
