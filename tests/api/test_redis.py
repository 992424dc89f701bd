"""The service with a real Redis: shared across replicas, survives Redis dying, never serves corruption."""

from __future__ import annotations

import hashlib
import time

import httpx
import pytest
import redis

from service.cache import cache_key
from service.export import GENERATOR_VERSION

pytestmark = pytest.mark.redis


def model(service: str, width: int) -> httpx.Response:
    r = httpx.get(f"{service}/model", params={"arch": "resnet20", "width": width}, timeout=60)
    assert r.status_code == 200, r.text
    return r


def ready_cache(service: str) -> str:
    r = httpx.get(f"{service}/readyz", timeout=10)
    assert r.status_code == 200  # Redis is an optimisation: never "not ready" because of it
    body = r.json()
    assert body["cache"] == body["redis"]  # with Redis configured the cache is as healthy as its Redis tier
    return body["cache"]


def wait_for_cache_state(service: str, state: str, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while ready_cache(service) != state:
        assert time.monotonic() < deadline, f"/readyz never reported cache={state}"
        time.sleep(0.1)


def test_replicas_share_blobs_through_redis(make_live_service, redis_server):
    a = make_live_service(redis_url=redis_server.url)
    b = make_live_service(redis_url=redis_server.url)
    first = model(a, 20)
    second = model(b, 20)
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("miss", "hit")
    assert first.content == second.content
    assert ready_cache(a) == "ok"


def test_redis_killed_mid_run_degrades_then_recovers(make_live_service, redis_server):
    service = make_live_service(redis_url=redis_server.url, redis_timeout_s=0.2)
    before = model(service, 14)
    redis_server.stop()
    during = model(service, 15)  # generated without Redis
    assert during.headers["x-cache"] == "miss"
    assert model(service, 14).content == before.content  # the memory tier still answers
    wait_for_cache_state(service, "degraded")
    assert service.metric("neumeta_cache_degraded") == 1
    redis_server.start()
    wait_for_cache_state(service, "ok")
    assert model(service, 16).status_code == 200
    assert service.metric("neumeta_cache_degraded") == 0


def test_corrupt_redis_entry_is_regenerated_never_served(make_live_service, redis_server):
    # No memory tier, so every request reads Redis.
    service = make_live_service(redis_url=redis_server.url, cache_max_bytes=0)
    clean = model(service, 18)
    clean_sha = hashlib.sha256(clean.content).hexdigest()
    ckpt_sha = hashlib.sha256(service.checkpoint.read_bytes()).hexdigest()
    key = cache_key(GENERATOR_VERSION, ckpt_sha, "torch", "resnet20", 18, "float32", 1)
    client = redis.Redis.from_url(redis_server.url)
    stored = client.get(key)
    assert stored is not None and clean.content in stored  # the documented key holds the blob
    for corrupt in (stored[:-1] + bytes([stored[-1] ^ 0xFF]), stored[: len(stored) // 2], b"garbage"):
        client.set(key, corrupt)
        r = model(service, 18)
        assert r.headers["x-cache"] == "miss"  # regenerated
        assert hashlib.sha256(r.content).hexdigest() == r.headers["x-model-sha256"] == clean_sha
    assert service.metric("neumeta_cache_events_total", tier="redis", event="corrupt") == 3
    assert model(service, 18).headers["x-cache"] == "hit"  # the regenerated entry replaced it
    client.close()


@pytest.mark.parametrize("refusal", ["oom", "readonly"])
def test_a_redis_that_refuses_writes_is_degraded_although_it_answers_ping(make_live_service, redis_server, refusal):
    from tests.fixtures.redis import free_port

    service = make_live_service(redis_url=redis_server.url)
    admin = redis.Redis.from_url(redis_server.url)
    assert ready_cache(service) == "ok" and service.metric("neumeta_cache_degraded") == 0
    if refusal == "oom":  # full, and told never to evict: every write is refused with OOM
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", "1")
    else:  # a replica (of a master that is not there): every write is refused with READONLY
        admin.replicaof("127.0.0.1", free_port())
    assert admin.ping()  # the old probe saw nothing wrong
    assert ready_cache(service) == "degraded"
    assert service.metric("neumeta_cache_degraded") == 1
    assert model(service, 21).headers["x-cache"] == "miss"  # still served: generated, the store refused
    assert service.metric("neumeta_cache_events_total", tier="redis", event="store") == 0

    if refusal == "oom":
        admin.config_set("maxmemory", "0")
    else:
        admin.replicaof("no", "one")
    wait_for_cache_state(service, "ok")
    assert service.metric("neumeta_cache_degraded") == 0


def test_a_blob_url_is_answered_by_a_replica_that_never_served_it(make_live_service, redis_server):
    a = make_live_service(redis_url=redis_server.url)
    b = make_live_service(redis_url=redis_server.url)
    served = model(a, 22)
    pinned = httpx.get(f"{b}{served.headers['content-location']}", timeout=60)  # as a round robin would
    assert pinned.status_code == 200 and pinned.content == served.content
    assert pinned.headers["cache-control"].endswith("immutable") and pinned.headers["x-cache"] == "hit"
    assert b.metric("neumeta_generations_total", arch="resnet20", backend="torch") == 0
    unknown = httpx.get(f"{b}/blobs/sha256/{'0' * 64}", timeout=60)
    assert unknown.status_code == 404 and unknown.headers["x-error-code"] == "blob_not_found"


def test_a_blob_made_with_other_numerics_is_not_generated_here(make_live_service, redis_server):
    import json

    service = make_live_service(redis_url=redis_server.url)
    digest = "ab" * 32
    ckpt_sha = hashlib.sha256(service.checkpoint.read_bytes()).hexdigest()
    other = cache_key(GENERATOR_VERSION, ckpt_sha, "triton-bf16", "resnet20", 8, "float32", 1)  # a GPU replica's
    record = {"key": other, "arch": "resnet20", "checkpoint_sha": ckpt_sha, "width": 8, "dtype": "float32",
              "samples": 1}
    redis.Redis.from_url(redis_server.url).set(f"neumeta-record:sha256:{digest}", json.dumps(record))
    r = httpx.get(f"{service}/blobs/sha256/{digest}", timeout=60)
    assert r.status_code == 404 and r.headers["x-error-code"] == "blob_not_found" and "numerics" in r.json()["message"]
    assert service.metric("neumeta_generations_total", arch="resnet20", backend="torch") == 0
