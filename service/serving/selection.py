"""Which network a ``/model`` query asks for: the width of an arch (given, or the largest fitting a
budget), or for a family request the (arch, width) its measured tables choose."""

from __future__ import annotations

from collections.abc import Callable

from service.api.query import ModelQuery
from service.archs import param_count
from service.catalog import Catalog
from service.errors import WidthOutOfRange
from service.families import candidates, choose
from service.export import predict_size
from service.hypernet.checkpoint import Checkpoint
from service.hypernet.generate import check_request


def _largest_fitting(lo: int, hi: int, cost: Callable[[int], int], budget: int) -> int | None:
    """Largest width in lo..hi with cost(width) <= budget; cost is non-decreasing in width."""
    if cost(lo) > budget:
        return None
    while lo < hi:  # invariant: cost(lo) fits
        mid = (lo + hi + 1) // 2
        if cost(mid) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


def resolve_width(ckpt: Checkpoint, query: ModelQuery, samples: int) -> int:
    """The width to generate; may build ONNX graphs to size them, so call it off the event loop."""
    m = ckpt.manifest
    lo, hi = m.widths_allowed.min, m.widths_allowed.max
    if query.width is not None:
        width = query.width
    elif query.max_params is None and query.max_bytes is None:
        width = m.default_width  # no selector: what GET /archs lists as the default
    elif query.max_params is not None:
        fits = _largest_fitting(lo, hi, lambda w: param_count(m.scope, w, m.in_channels, m.num_classes),
                                query.max_params)
        if fits is None:
            smallest = param_count(m.scope, lo, m.in_channels, m.num_classes)
            raise WidthOutOfRange(f"no width of {m.arch} fits max_params={query.max_params} "
                                  f"(the smallest, width {lo}, has {smallest} parameters)")
        width = fits
    else:
        assert query.max_bytes is not None  # parse_model_query allows at most one selector
        fits = _largest_fitting(lo, hi, lambda w: predict_size(m, w, query.dtype, samples), query.max_bytes)
        if fits is None:
            smallest = predict_size(m, lo, query.dtype, samples)
            raise WidthOutOfRange(f"no width of {m.arch} fits max_bytes={query.max_bytes} as {query.dtype} "
                                  f"(the smallest, width {lo}, is {smallest} bytes)")
        width = fits
    check_request(ckpt, width, samples)  # WidthOutOfRange with the allowed range in the message
    return width


def choose_in_family(catalog: Catalog, query: ModelQuery) -> tuple[Checkpoint, int]:
    """The checkpoint and width of a ``family=`` request; the first call sizes every width's ONNX
    file (``Catalog.entries``, about a second), so call it off the event loop."""
    assert query.family is not None
    found = candidates(catalog.entries(), query.family, query.dtype)
    chosen = choose(found, query.family, query.dtype, max_bytes=query.max_bytes, max_params=query.max_params,
                    min_accuracy=query.min_accuracy)
    return catalog.get(chosen.arch), chosen.width
