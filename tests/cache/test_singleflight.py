import asyncio

import pytest

from service.cache.singleflight import SingleFlight


async def test_concurrent_calls_share_one_run():
    flights: SingleFlight[int] = SingleFlight()
    runs = 0

    async def work() -> int:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.05)
        return 42

    results = await asyncio.gather(*(flights.run("k", work) for _ in range(20)))
    assert runs == 1
    assert [r for r, _ in results] == [42] * 20
    assert sorted(joined for _, joined in results) == [False] + [True] * 19
    assert "k" not in flights and len(flights) == 0


async def test_distinct_keys_run_separately():
    flights: SingleFlight[str] = SingleFlight()

    async def work_for(key: str):
        async def work() -> str:
            await asyncio.sleep(0.01)
            return key.upper()

        return await flights.run(key, work)

    results = await asyncio.gather(work_for("a"), work_for("b"))
    assert [r for r, _ in results] == ["A", "B"]
    assert not any(joined for _, joined in results)


async def test_failure_reaches_every_caller_and_is_not_cached():
    flights: SingleFlight[int] = SingleFlight()
    runs = 0

    async def failing() -> int:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.02)
        raise RuntimeError("generation failed")

    results = await asyncio.gather(*(flights.run("k", failing) for _ in range(10)), return_exceptions=True)
    assert runs == 1
    assert all(isinstance(r, RuntimeError) and str(r) == "generation failed" for r in results)
    assert "k" not in flights

    async def ok() -> int:
        return 7

    assert await flights.run("k", ok) == (7, False)  # a fresh run, not the old failure


async def test_cancelled_leader_does_not_cancel_the_work_for_others():
    flights: SingleFlight[int] = SingleFlight()
    runs, release = 0, asyncio.Event()

    async def work() -> int:
        nonlocal runs
        runs += 1
        await release.wait()  # the test, not a timer, decides when the work ends
        return 5

    leader = asyncio.create_task(flights.run("k", work))
    await asyncio.sleep(0)  # the leader starts the work
    follower = asyncio.create_task(flights.run("k", work))
    await asyncio.sleep(0)  # the follower joins it
    leader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader
    assert "k" in flights  # the leader's cancellation left the work running
    release.set()
    assert await follower == (5, True)
    assert runs == 1
