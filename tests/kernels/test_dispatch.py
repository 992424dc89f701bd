"""Backend dispatch helpers that run without a GPU."""

from __future__ import annotations

import torch

from kernels.dispatch import on_device

META = torch.device("meta")  # a non-CPU device every machine has: copies are real, data-free


def test_on_device_reuses_the_copy_until_the_source_changes():
    weights = torch.randn(4, 4)
    first = on_device(weights, META)
    assert first.device == META and on_device(weights, META) is first
    weights.add_(1.0)  # in place (an optimizer step): the cached copy is stale
    assert on_device(weights, META) is not first


def test_on_device_returns_a_tensor_already_there_untouched():
    weights = torch.randn(3)
    assert on_device(weights, torch.device("cpu")) is weights


def test_on_device_forgets_the_copy_with_its_source():
    import gc

    from kernels import dispatch

    weights = torch.randn(2)
    on_device(weights, META)
    key = id(weights)
    assert dispatch._DEVICE_COPIES.holds(key)
    del weights
    gc.collect()
    assert not dispatch._DEVICE_COPIES.holds(key)
