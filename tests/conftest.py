"""Shared test setup: fixtures live in tests/fixtures/ and are loaded as plugins."""

import pytest
import torch

pytest_plugins = ["tests.fixtures.redis", "tests.fixtures.servers"]

torch.set_num_threads(1)  # CI machines have 2 cores; tests stay small


@pytest.fixture
def tiny_ckpt_path(tmp_path):
    from tests.factories import tiny_checkpoint

    return tiny_checkpoint(tmp_path / "tiny.safetensors")
