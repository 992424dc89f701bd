"""The compose topology on loopback: deploy/nginx/nginx.conf in front of two real service
replicas that share one real Redis. What one replica generated, the other serves as a hit."""

from __future__ import annotations

import shutil

import httpx
import pytest

pytestmark = [pytest.mark.redis, pytest.mark.slow,
              pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx not installed")]


@pytest.fixture
def proxy(redis_server, make_live_service, start_nginx):
    replicas = [make_live_service(redis_url=redis_server.url) for _ in range(2)]
    return start_nginx([r.url.removeprefix("http://") for r in replicas]), replicas


def test_a_model_generated_behind_one_replica_is_a_cache_hit_behind_the_other(proxy):
    url, replicas = proxy
    params = {"arch": "resnet20", "width": 24}
    with httpx.Client(base_url=url, timeout=60) as client:
        first = client.get("/model", params=params)
        second = client.get("/model", params=params)
    assert first.status_code == second.status_code == 200, first.text
    # round robin: the two requests landed on different replicas
    assert first.headers["X-Upstream"] != second.headers["X-Upstream"]
    assert {first.headers["X-Upstream"], second.headers["X-Upstream"]} == {r.url.removeprefix("http://")
                                                                           for r in replicas}
    assert first.headers["X-Cache"] == "miss"
    assert second.headers["X-Cache"] == "hit"  # from Redis: the second replica never generated it
    assert second.content == first.content and second.headers["ETag"] == first.headers["ETag"]
    generations = [r.metric("neumeta_generations_total", arch="resnet20") for r in replicas]
    assert sorted(generations) == [0.0, 1.0]


def test_probes_and_metrics_pass_through_the_proxy(proxy):
    url, _ = proxy
    for path in ("/healthz", "/readyz", "/metrics"):
        assert httpx.get(f"{url}{path}", timeout=10).status_code == 200


def test_a_client_request_id_survives_the_proxy(proxy):
    url, _ = proxy
    response = httpx.get(f"{url}/archs", headers={"X-Request-ID": "edge-device-7.trace-42"}, timeout=10)
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "edge-device-7.trace-42"
