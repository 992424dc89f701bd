"""Fixtures of the deployment tests; the readers they share live in tests/deploy/loaders.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.deploy.loaders import ROOT


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
