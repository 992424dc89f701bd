"""Sans-I/O plumbing: client logic is written once as a generator of effects, run by a sync or async driver.

A flow ``yield``s `Send` (an HTTP request, optionally streaming the body into a sink) or `Sleep`,
and gets back the response or has the transport exception thrown into it. The two drivers below
are the only code that differs between `Client` and `AsyncClient`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import httpx

T = TypeVar("T")


class BodySink(Protocol):
    def accepts(self, response: httpx.Response) -> bool:
        """Called with the response head; True streams the body into `write`, False reads it into memory."""

    def write(self, chunk: bytes) -> None: ...


@dataclass(frozen=True)
class Send:
    request: httpx.Request
    sink: BodySink | None = None


@dataclass(frozen=True)
class Sleep:
    seconds: float


Effect = Send | Sleep
Flow = Generator[Effect, Any, T]


def run_sync(flow: Flow[T], http: httpx.Client) -> T:
    reply: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = flow.throw(error) if error is not None else flow.send(reply)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        reply, error = None, None
        try:
            if isinstance(effect, Sleep):
                time.sleep(effect.seconds)
            else:
                response = http.send(effect.request, stream=True)
                try:
                    if effect.sink is not None and effect.sink.accepts(response):
                        # No re-chunking: every byte received reaches the sink before a drop is raised,
                        # so a resume starts exactly where the connection died.
                        for chunk in response.iter_bytes():
                            effect.sink.write(chunk)
                    else:
                        response.read()
                finally:
                    response.close()
                reply = response
        except Exception as exc:  # noqa: BLE001 - the flow decides what is retryable
            error = exc
        except BaseException:  # Ctrl-C: let the flow's finally blocks release locks, then stop
            flow.close()
            raise


async def run_async(flow: Flow[T], http: httpx.AsyncClient) -> T:
    reply: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = flow.throw(error) if error is not None else flow.send(reply)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        reply, error = None, None
        try:
            if isinstance(effect, Sleep):
                await asyncio.sleep(effect.seconds)
            else:
                response = await http.send(effect.request, stream=True)
                try:
                    if effect.sink is not None and effect.sink.accepts(response):
                        async for chunk in response.aiter_bytes():
                            effect.sink.write(chunk)  # small local writes; models are a few MB
                    else:
                        await response.aread()
                finally:
                    await response.aclose()
                reply = response
        except Exception as exc:  # noqa: BLE001 - as in run_sync, the flow decides
            error = exc
        except BaseException:  # cancellation: release locks, then propagate
            flow.close()
            raise
