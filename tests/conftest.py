"""Shared test setup: fixtures live in tests/fixtures/ and are loaded as plugins."""

import pytest
import torch

pytest_plugins = ["tests.fixtures.redis", "tests.fixtures.servers"]

torch.set_num_threads(1)  # CI machines have 2 cores; tests stay small


@pytest.fixture
def tiny_ckpt_path(tmp_path):
    from tests.factories import tiny_checkpoint

    return tiny_checkpoint(tmp_path / "tiny.safetensors")


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory):
    """That checkpoint loaded, once for the whole session: for tests that only read it."""
    from service.hypernet import load_checkpoint
    from tests.factories import tiny_checkpoint

    return load_checkpoint(tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "tiny.safetensors"))
