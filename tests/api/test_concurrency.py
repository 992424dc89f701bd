"""Many clients asking for one new width at once cost exactly one generation."""

from __future__ import annotations

import asyncio
import hashlib
import time

import httpx

from service.serving.pipeline import render


async def test_fifty_concurrent_requests_generate_once(live_service):
    def slow(request):  # long enough that every request arrives while it runs
        time.sleep(0.5)
        return render(request)

    live_service.use_generator(slow)
    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(base_url=live_service, limits=limits, timeout=60) as client:
        responses = await asyncio.gather(*(
            client.get("/model", params={"arch": "resnet20", "width": 40}) for _ in range(50)
        ))
    assert [r.status_code for r in responses] == [200] * 50
    bodies = {r.content for r in responses}
    assert len(bodies) == 1
    assert {r.headers["x-model-sha256"] for r in responses} == {hashlib.sha256(bodies.pop()).hexdigest()}
    statuses = [r.headers["x-cache"] for r in responses]
    assert statuses.count("miss") == 1 and set(statuses) <= {"miss", "coalesced", "hit"}
    assert live_service.metric("neumeta_generations_total", arch="resnet20", backend="torch") == 1
    assert live_service.metric("neumeta_http_requests_total", route="/model", method="GET", status="200") == 50
