"""Fixtures of the deployment tests; the readers they share live in tests/deploy/loaders.py."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.loaders import ROOT
from tests.fixtures.redis import free_port
from tests.waiting import wait_until_answering


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def app_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The real app (lifespan run) on a tiny checkpoint, for requests the probes would send."""
    from fastapi.testclient import TestClient

    from service.api.app import create_app
    from service.settings import Settings
    from tests.factories import tiny_checkpoint

    checkpoint = tiny_checkpoint(tmp_path_factory.mktemp("deploy") / "resnet20.safetensors")
    with TestClient(create_app(Settings(checkpoints=[checkpoint]))) as client:
        yield client


def render_nginx_conf(prefix: Path, upstreams: list[str], port: int) -> str:
    """The shipped config with only the addresses swapped: compose DNS name -> loopback replicas."""
    conf = (ROOT / "deploy" / "nginx" / "nginx.conf").read_text()
    assert "server neumeta:8000 resolve;" in conf and "listen 8080;" in conf
    servers = "\n        ".join(f"server {address};" for address in upstreams)
    conf = conf.replace("server neumeta:8000 resolve;", servers)  # `resolve` needs nginx >= 1.27.3
    conf = conf.replace("listen 8080;", f"listen 127.0.0.1:{port};")
    return conf.replace("/tmp/", f"{prefix}/")


@pytest.fixture
def nginx_dir() -> Iterator[Path]:
    """nginx's prefix. Not pytest's tmp_path: run as root, nginx writes its cache from worker processes
    running as nobody, who cannot enter pytest's 0700 directories (the cache then silently stays empty)."""
    path = Path(tempfile.mkdtemp(prefix="neumeta-nginx-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def start_nginx(nginx_dir: Path) -> Iterator[Callable[[list[str]], str]]:
    """``start_nginx(["127.0.0.1:PORT", ...])`` runs deploy/nginx/nginx.conf in front of those upstreams and
    returns its URL once it answers; every nginx started is stopped at teardown."""
    started: list[subprocess.Popen[bytes]] = []

    def start(upstreams: list[str]) -> str:
        port = free_port()
        conf, log = nginx_dir / "nginx.conf", nginx_dir / "nginx.log"
        conf.write_text(render_nginx_conf(nginx_dir, upstreams, port))
        with log.open("w") as out:  # a file, not a pipe: nobody reads the access log while tests run
            proc = subprocess.Popen(["nginx", "-p", str(nginx_dir), "-c", str(conf), "-e", "stderr", "-g",
                                     "daemon off;"], stdout=out, stderr=subprocess.STDOUT)
        started.append(proc)
        url = f"http://127.0.0.1:{port}"
        wait_until_answering(proc, f"{url}/nginx-health", log)  # nginx's own log if it dies first
        return url

    yield start
    for proc in started:
        proc.terminate()
        proc.wait(timeout=10)
