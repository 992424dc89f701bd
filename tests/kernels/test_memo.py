"""TensorMemo: values derived from a live tensor, never stale, never another tensor's."""

from __future__ import annotations

import gc
import threading

import pytest
import torch

from kernels.memo import TensorMemo


class Counting:
    """A ``make`` that doubles its source and counts how often it ran."""

    def __init__(self, source: torch.Tensor) -> None:
        self.source, self.calls = source, 0

    def __call__(self) -> torch.Tensor:
        self.calls += 1
        return self.source * 2


def test_a_hit_returns_the_same_value_without_making_it_again():
    memo, source = TensorMemo(per_source=2), torch.randn(3)
    make = Counting(source)
    first = memo.get(source, "k", make)
    assert torch.equal(first, source * 2)
    assert memo.get(source, "k", make) is first and make.calls == 1


def test_an_in_place_update_of_the_source_is_a_miss():
    memo, source = TensorMemo(per_source=2), torch.randn(3)
    make = Counting(source)
    first = memo.get(source, "k", make)
    source.add_(1.0)  # an optimizer step
    second = memo.get(source, "k", make)
    assert second is not first and make.calls == 2
    assert torch.equal(second, source * 2)


def test_new_storage_under_the_same_tensor_is_a_miss():
    memo, source = TensorMemo(per_source=2), torch.randn(3)
    make = Counting(source)
    first = memo.get(source, "k", make)
    with torch.no_grad():
        source.set_(torch.randn(3))  # what load_state_dict(assign=True)-style swaps can do
    assert memo.get(source, "k", make) is not first


def test_a_dtype_change_of_the_source_is_a_miss():
    memo, source = TensorMemo(per_source=2), torch.randn(3)
    make = Counting(source)
    first = memo.get(source, "k", make)
    source.data = source.data.double()  # what module.to(torch.float64) does to a parameter
    assert memo.get(source, "k", make) is not first and make.calls == 2


def test_each_source_keeps_its_most_recently_used_values():
    memo, source = TensorMemo(per_source=2), torch.randn(3)
    make = Counting(source)
    a = memo.get(source, "a", make)
    memo.get(source, "b", make)
    assert memo.get(source, "a", make) is a  # "a" is now the most recent; "b" goes next
    memo.get(source, "c", make)
    calls = make.calls
    assert memo.get(source, "a", make) is a and make.calls == calls
    memo.get(source, "b", make)
    assert make.calls == calls + 1  # "b" was dropped


def test_sources_do_not_share_values():
    memo = TensorMemo(per_source=1)
    one, two = torch.ones(2), torch.ones(2)
    assert memo.get(one, "k", Counting(one)) is not memo.get(two, "k", Counting(two))


def test_values_are_dropped_with_their_source():
    memo = TensorMemo(per_source=1)
    source = torch.randn(2)
    memo.get(source, "k", Counting(source))
    source_id = id(source)
    assert memo.holds(source_id)
    del source
    gc.collect()
    assert not memo.holds(source_id)


def test_concurrent_gets_make_one_value():
    memo, source = TensorMemo(per_source=1), torch.randn(64)
    make = Counting(source)
    results: list[torch.Tensor] = []
    threads = [threading.Thread(target=lambda: results.append(memo.get(source, "k", make))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert make.calls == 1 and all(r is results[0] for r in results)


def test_per_source_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        TensorMemo(per_source=0)
