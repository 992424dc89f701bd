"""The generation pool: admission bound, timeout, and gauges that return to zero."""

from __future__ import annotations

import asyncio
import threading

import pytest

from service.api.generation import GenerationPool
from service.errors import Busy
from service.metrics import Metrics
from tests.waiting import async_wait_until


def gauges(metrics: Metrics) -> tuple[float, float]:
    return metrics.generations_in_flight._value.get(), metrics.generation_queue._value.get()


async def test_runs_off_the_event_loop_and_returns_the_result():
    pool = GenerationPool(1, 0, 5.0, 1, Metrics())
    loop_thread = threading.get_ident()
    assert await pool.run(lambda: threading.get_ident()) != loop_thread
    pool.shutdown()


async def test_full_pool_refuses_and_slots_come_back():
    metrics = Metrics()
    pool = GenerationPool(1, 1, 5.0, 3, metrics)
    gate = threading.Event()
    running = asyncio.gather(pool.run(gate.wait), pool.run(lambda: "queued"))
    await async_wait_until(lambda: gauges(metrics) == (1, 1), "one job running, one queued")
    assert pool.admitted == 2
    with pytest.raises(Busy) as refused:
        await pool.run(lambda: "third")
    assert refused.value.retry_after == 3
    gate.set()
    assert await running == [True, "queued"]
    await async_wait_until(lambda: pool.admitted == 0, "done-callbacks release the slots")
    assert gauges(metrics) == (0, 0)
    pool.shutdown()


async def test_timeout_is_busy_and_a_queued_job_never_runs():
    metrics = Metrics()
    pool = GenerationPool(1, 1, 0.1, 1, metrics)
    gate, ran = threading.Event(), []
    first = asyncio.ensure_future(pool.run(gate.wait))
    await async_wait_until(lambda: gauges(metrics) == (1, 0), "the first job holds the only thread")
    with pytest.raises(Busy, match="did not finish"):
        await pool.run(lambda: ran.append("queued"))  # waits behind the first, then times out
    with pytest.raises(Busy):
        await first
    gate.set()
    await async_wait_until(lambda: pool.admitted == 0, "the first job's slot comes back")
    assert ran == [] and gauges(metrics) == (0, 0)
    pool.shutdown()
