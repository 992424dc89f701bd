"""Poll for a condition instead of sleeping a fixed time.

A loaded CI machine can take a hundred times longer than a quiet one to start a thread or answer
a request, so a test never assumes that something happened after N milliseconds: it waits until
it has, and the deadline only stops a test that is broken.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx

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


def wait_until_answering(proc: subprocess.Popen, url: str, log: Path, timeout_s: float = DEADLINE_S) -> None:
    """Until ``url`` answers 200 from the server process ``proc``; its ``log`` if it dies first."""
    deadline = time.monotonic() + timeout_s
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            if httpx.get(url).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{url}: no 200 within {timeout_s:g}s"
        time.sleep(0.2)
