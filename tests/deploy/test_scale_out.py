"""The compose topology on loopback: deploy/nginx/nginx.conf in front of two real service
replicas that share one real Redis. What one replica generated, the other serves as a hit."""

from __future__ import annotations

import shutil
import subprocess
import time

import httpx
import pytest

from tests.deploy.loaders import ROOT
from tests.fixtures.redis import free_port
from tests.waiting import DEADLINE_S

pytestmark = [pytest.mark.redis, pytest.mark.slow,
              pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx not installed")]


def render_nginx_conf(tmp_path, upstreams: list[str], port: int) -> str:
    """The shipped config with only the addresses swapped: compose DNS name -> loopback replicas."""
    conf = (ROOT / "deploy" / "nginx" / "nginx.conf").read_text()
    assert "server neumeta:8000 resolve;" in conf and "listen 8080;" in conf
    servers = "\n        ".join(f"server {address};" for address in upstreams)
    conf = conf.replace("server neumeta:8000 resolve;", servers)  # `resolve` needs nginx >= 1.27.3
    conf = conf.replace("listen 8080;", f"listen 127.0.0.1:{port};")
    return conf.replace("/tmp/", f"{tmp_path}/")


@pytest.fixture
def proxy(tmp_path, redis_server, make_live_service):
    replicas = [make_live_service(redis_url=redis_server.url) for _ in range(2)]
    port = free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(render_nginx_conf(tmp_path, [r.url.removeprefix("http://") for r in replicas], port))
    proc = subprocess.Popen(["nginx", "-p", str(tmp_path), "-c", str(conf), "-e", "stderr", "-g", "daemon off;"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + DEADLINE_S
    while True:
        try:
            httpx.get(f"{url}/nginx-health", timeout=1)
            break
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"nginx did not start: {proc.stdout.read().decode()}")
            time.sleep(0.05)
    try:
        yield url, replicas
    finally:
        proc.terminate()
        proc.wait(timeout=10)


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
