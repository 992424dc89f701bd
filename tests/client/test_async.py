"""`AsyncClient` has the same behaviour as `Client` (one shared flow, a different driver)."""

from __future__ import annotations

import asyncio
import time

import neumeta_client as nc
import pytest

from tests.client.conftest import FAST_RETRY, assert_blobs_verified


async def test_async_pull_resumes_after_a_drop_and_revalidates(make_async_client, faulty, model_body, cache_dir):
    faulty.script("drop:77777")
    async with make_async_client() as client:
        path = await client.pull("resnet20", 8)
        again = await client.pull("resnet20", 8)

    assert path == again and path.read_bytes() == model_body
    ranges = [r.headers.get("range") for r in faulty.model_requests()]
    assert ranges == [None, "bytes=77777-", None]
    assert faulty.model_requests()[2].headers["if-none-match"] == faulty.etag
    assert assert_blobs_verified(cache_dir) == [path]


async def test_async_retry_sleeps_do_not_block_the_event_loop(make_async_client, faulty):
    # A 3 s Retry-After: about 60 ticks on a free loop and at most a couple if the wait blocked it,
    # so the bound below holds even where the machine is several times too slow to tick on time.
    faulty.script("busy:3")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.05)
            ticks += 1

    task = asyncio.create_task(ticker())
    start = time.monotonic()
    async with make_async_client() as client:
        await client.pull("resnet20", 8)
    task.cancel()
    assert time.monotonic() - start >= 3.0
    assert ticks >= 10  # the loop kept running during the Retry-After wait


async def test_async_concurrent_pulls_share_one_download(make_async_client, faulty):
    faulty.script("stall:0.3")
    async with make_async_client() as a, make_async_client() as b:
        paths = await asyncio.gather(a.pull("resnet20", 8), b.pull("resnet20", 8))

    assert paths[0] == paths[1]
    assert len([r for r in faulty.model_requests() if "if-none-match" not in r.headers]) == 1


async def test_async_errors_are_the_same_types(make_async_client, faulty):
    faulty.script("error:width_out_of_range:422", *["corrupt"] * (FAST_RETRY.retries + 1))
    async with make_async_client() as client:
        with pytest.raises(nc.WidthOutOfRange):
            await client.pull("resnet20", 999)
        with pytest.raises(nc.ChecksumMismatch):
            await client.pull("resnet20", 8)
        assert (await client.archs())["resnet20"]["widths"]["min"] == 1


async def test_cancelled_pull_releases_the_lock(make_async_client, faulty, model_body):
    faulty.script("stall:1.0")
    async with make_async_client(lock_timeout=0.5) as client:
        task = asyncio.create_task(client.pull("resnet20", 8))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        path = await client.pull("resnet20", 8)  # would raise CacheLockTimeout if the lock leaked
    assert path.read_bytes() == model_body
