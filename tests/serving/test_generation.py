"""The generation pool: admission bound, timeout, and gauges that return to zero."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from service.errors import Busy
from service.metrics import Metrics
from service.serving.generation import GenerationPool
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


async def test_a_running_job_outlives_its_cancelled_caller_and_a_queued_one_is_dropped():
    metrics = Metrics()
    pool = GenerationPool(1, 1, 30.0, 1, metrics)
    gate, ran = threading.Event(), []
    first = asyncio.ensure_future(pool.run(lambda: gate.wait() and ran.append("first")))
    await async_wait_until(lambda: gauges(metrics) == (1, 0), "the first job holds the only thread")
    queued = asyncio.ensure_future(pool.run(lambda: ran.append("queued")))
    await async_wait_until(lambda: gauges(metrics) == (1, 1), "the second job waits")
    first.cancel(), queued.cancel()  # both callers give up
    await asyncio.gather(first, queued, return_exceptions=True)
    gate.set()
    await async_wait_until(lambda: pool.admitted == 0, "the running job finishes and frees its slot")
    assert ran == ["first"] and gauges(metrics) == (0, 0)
    pool.shutdown()


async def test_admission_refuses_at_once_when_the_expected_wait_passes_the_timeout():
    pool = GenerationPool(1, 8, 3.0, 9, Metrics())
    await pool.run(lambda: time.sleep(2.0))  # measured: a generation takes ~2 s
    gate = threading.Event()
    running = asyncio.ensure_future(pool.run(gate.wait, "running"))
    await async_wait_until(lambda: pool.slot_wait_s() > 0, "the running job holds the thread")
    queued = asyncio.ensure_future(pool.run(lambda: "queued", "queued"))  # starts in ~2 s: within 3 s
    await async_wait_until(lambda: pool.admitted == 2, "the second job is queued")
    assert 3 <= pool.retry_after_s("queued") <= 5  # a thread in ~2 s, then ~2 s of work
    started = time.monotonic()
    with pytest.raises(Busy, match="expected in") as refused:
        await pool.run(lambda: "third")  # would start in ~4 s: past the timeout
    assert time.monotonic() - started < 0.5  # at once, not after the timeout
    assert 3 <= refused.value.retry_after <= 5 and pool.admitted == 2  # honest, not the configured 9; not queued
    gate.set()
    assert await asyncio.gather(running, queued) == [True, "queued"]
    pool.shutdown()
