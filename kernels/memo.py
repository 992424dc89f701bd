"""Values derived from a live tensor, kept while that tensor is alive and unchanged.

Three places need this: device copies of CPU weights (so a GPU generation does not re-upload them
every request), a band-limited INR's scaled input weights (so a served width hands the device
cache the same tensor every call) and the fused kernel's packed weights (kernels.fused_inr). All
derive something from a long-lived tensor and must never return a value computed from an older
state of it, or from another tensor that happens to reuse its id.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

import torch

V = TypeVar("V")


class TensorMemo(Generic[V]):
    """Up to ``per_source`` derived values per source tensor, least recently used dropped first.

    Entries are keyed by the source's ``id`` (a tensor compares elementwise, so it cannot be a dict
    key itself) and live beside the tensor, not on it, so a deepcopy (an EMA) or a state dict never
    carries them. A finalizer drops a source's entries when it dies, before its id can be reused.
    The source's version counter and storage (device, dtype, pointer) are part of every key, so an
    in-place update (an optimizer step) or a move to new storage, another device or another dtype
    is a miss, never a stale hit.
    """

    def __init__(self, per_source: int) -> None:
        if per_source < 1:
            raise ValueError(f"per_source must be at least 1, got {per_source}")
        self.per_source = per_source
        self._kept: dict[int, OrderedDict[Hashable, V]] = {}
        self._lock = threading.Lock()  # the service generates from worker threads

    def get(self, source: torch.Tensor, key: Hashable, make: Callable[[], V]) -> V:
        """The value kept for (``source`` as it is now, ``key``), made by ``make()`` on a miss."""
        full_key = (key, source._version, source.device, source.dtype, source.data_ptr())
        with self._lock:
            kept = self._kept.get(id(source))
            if kept is None:
                kept = self._kept[id(source)] = OrderedDict()
                weakref.finalize(source, self._kept.pop, id(source), None)
            value = kept.get(full_key)
            if value is None:
                value = kept[full_key] = make()
                while len(kept) > self.per_source:
                    kept.popitem(last=False)
            kept.move_to_end(full_key)
            return value

    def holds(self, source_id: int) -> bool:
        """Whether anything is kept for the tensor with this ``id`` (tests use it to watch the
        finalizer: after the source dies, only its id is left to ask about)."""
        return source_id in self._kept
