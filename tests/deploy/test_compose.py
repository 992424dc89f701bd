"""docker-compose.yml, its Redis config and its nginx front: wired to each other, to the
Dockerfile targets and to the Settings the service reads."""

from __future__ import annotations

import re
import shutil
import subprocess
from urllib.parse import urlparse

import pytest

from tests.deploy.loaders import ROOT, dockerfile_stages, redis_conf, settings_env_names

NGINX_CONF = ROOT / "deploy" / "nginx" / "nginx.conf"


def mounted(service: dict, container_path: str) -> str:
    """The host file (relative to the repo) mounted at container_path."""
    for volume in service["volumes"]:
        host, target, *_ = volume.split(":")
        if target == container_path:
            return host
    raise AssertionError(f"nothing mounted at {container_path}")


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose (v1) not installed")
def test_docker_compose_accepts_the_file_with_every_profile():
    argv = ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "--profile", "gpu", "--profile", "monitoring",
            "config", "-q"]
    out = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_redis_is_healthchecked_and_configured_as_an_lru_cache(compose):
    redis = compose["services"]["redis"]
    assert redis["image"] == "redis:7-alpine"
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    config_path = redis["command"][-1]
    conf = redis_conf((ROOT / mounted(redis, config_path)).read_text())
    assert conf["maxmemory-policy"] == "allkeys-lru" and conf["maxmemory"].endswith("mb")
    assert conf["save"] == '""' and conf["appendonly"] == "no"


def test_replicas_start_after_redis_is_healthy_and_share_it(compose):
    service = compose["services"]["neumeta"]
    assert service["deploy"]["replicas"] == 2
    assert service["depends_on"]["redis"]["condition"] == "service_healthy"
    url = urlparse(service["environment"]["NEUMETA_REDIS_URL"])
    assert url.hostname == "redis" and url.hostname in compose["services"]
    port = redis_conf((ROOT / "deploy" / "redis" / "redis.conf").read_text())["port"]
    assert url.port == int(port)


@pytest.mark.parametrize("name,target", [("neumeta", "cpu"), ("neumeta-gpu", "cuda")])
def test_services_build_dockerfile_targets_with_settings_env(compose, name, target):
    from service.settings import Settings

    service = compose["services"][name]
    assert service["build"]["target"] == target and target in dockerfile_stages()
    assert service["image"].endswith(f"-{target}")
    env = service["environment"]
    assert set(env) <= settings_env_names(), set(env) - settings_env_names()
    Settings(**{key.removeprefix("NEUMETA_").lower(): value for key, value in env.items()})  # values validate


def test_gpu_replica_sits_behind_a_profile_with_a_gpu_reservation(compose):
    gpu = compose["services"]["neumeta-gpu"]
    assert gpu["profiles"] == ["gpu"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"]
    assert gpu["environment"]["NEUMETA_BACKEND"] == "triton"
    assert gpu["depends_on"]["redis"]["condition"] == "service_healthy"
    assert all("profiles" not in compose["services"][name] for name in ("redis", "neumeta", "proxy"))


def test_nginx_balances_the_compose_service_on_its_port(compose):
    proxy = compose["services"]["proxy"]
    conf = (ROOT / mounted(proxy, "/etc/nginx/nginx.conf")).read_text()
    (upstream,) = re.findall(r"server (\S+):(\d+) resolve;", conf)
    assert upstream[0] in compose["services"]
    assert dockerfile_stages()["cpu"].all("EXPOSE") == [upstream[1]]
    (listen,) = re.findall(r"listen (\d+);", conf)
    assert proxy["ports"] == [f"8080:{listen}"]
    # nginx must outwait the service's own generation timeout, which answers 503 busy itself
    from service.settings import Settings

    env = compose["services"]["neumeta"]["environment"]
    timeout = float(env.get("NEUMETA_GENERATION_TIMEOUT_S", Settings.model_fields["generation_timeout_s"].default))
    assert int(re.search(r"proxy_read_timeout (\d+)s;", conf).group(1)) > timeout
    # `resolve` in open-source nginx needs 1.27.3+
    major, minor = map(int, re.match(r"nginx:(\d+)\.(\d+)", proxy["image"]).groups())
    assert (major, minor) >= (1, 28)


def test_prometheus_discovers_compose_services(compose):
    import yaml

    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus-compose.yml").read_text())
    for job in config["scrape_configs"]:
        for sd in job["dns_sd_configs"]:
            assert set(sd["names"]) <= set(compose["services"])
            assert sd["port"] == 8000
    prometheus = compose["services"]["prometheus"]
    assert prometheus["command"] == ["--config.file=/etc/prometheus/prometheus-compose.yml"]
    assert mounted(prometheus, "/etc/prometheus") == "./deploy/prometheus"
