"""Poll for a condition instead of sleeping a fixed time.

A loaded CI machine can take a hundred times longer than a quiet one to start a thread or answer
a request, so a test never assumes that something happened after N milliseconds: it waits until
it has, and the deadline only stops a test that is broken.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

DEADLINE_S = 120.0


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s:g}s"
        time.sleep(0.01)


async def async_wait_until(condition: Callable[[], bool], what: str, timeout_s: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s:g}s"
        await asyncio.sleep(0.01)
