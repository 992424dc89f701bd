"""Which network a parsed ``/model`` query asks for, resolved once into a ``ModelRequest``: the
width of an arch (given, the default, or the largest fitting a budget), or for a family request the
(arch, width) its measured tables choose."""

from __future__ import annotations

from collections.abc import Callable

from service.errors import WidthOutOfRange
from service.export import predict_size
from service.hypernet.checkpoint import Checkpoint
from service.hypernet.generate import check_width, resolve_samples
from service.serving.catalog import Catalog
from service.serving.families import candidates, choose
from service.serving.request import ModelQuery, ModelRequest, params_at


def sizes_files(query: ModelQuery) -> bool:
    """Whether choosing may size ONNX files (about a second the first time): then call ``select``
    off the event loop. A given width or the default is chosen at once."""
    return query.family is not None or query.max_params is not None or query.max_bytes is not None


def select(catalog: Catalog, query: ModelQuery, *, backend: str, precision: str, max_samples: int) -> ModelRequest:
    """The request a parsed query names; raises the documented typed errors. ``backend`` is the
    service's concrete one and ``query.dtype`` was checked by the parser: neither is checked again."""
    if query.family is not None:
        ckpt, width = _choose_in_family(catalog, query)
        samples = resolve_samples(ckpt, None, max_samples)  # the K of the measured tables
    else:
        assert query.arch is not None  # parse_model_query demands exactly one of arch and family
        ckpt = catalog.get(query.arch)
        samples = resolve_samples(ckpt, query.samples, max_samples)
        width = _width(ckpt, query, samples)
    return ModelRequest(ckpt, width, query.dtype, samples, backend, precision)


def _width(ckpt: Checkpoint, query: ModelQuery, samples: int) -> int:
    m = ckpt.manifest
    lo, hi = m.widths_allowed.min, m.widths_allowed.max
    if query.width is not None:
        check_width(ckpt, query.width)  # WidthOutOfRange with the allowed range in the message
        return query.width
    if query.max_params is not None:
        fits = _largest_fitting(lo, hi, lambda w: params_at(m, w), query.max_params)
        if fits is None:
            smallest = params_at(m, lo)
            raise WidthOutOfRange(f"no width of {m.arch} fits max_params={query.max_params} "
                                  f"(the smallest, width {lo}, has {smallest} parameters)")
        return fits
    if query.max_bytes is not None:
        fits = _largest_fitting(lo, hi, lambda w: predict_size(m, w, query.dtype, samples), query.max_bytes)
        if fits is None:
            smallest = predict_size(m, lo, query.dtype, samples)
            raise WidthOutOfRange(f"no width of {m.arch} fits max_bytes={query.max_bytes} as {query.dtype} "
                                  f"(the smallest, width {lo}, is {smallest} bytes)")
        return fits
    return m.default_width  # no selector: what GET /archs lists as the default


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


def _choose_in_family(catalog: Catalog, query: ModelQuery) -> tuple[Checkpoint, int]:
    """The checkpoint and width of a ``family=`` request; the first call sizes every width's ONNX
    file (``Catalog.entries``, about a second)."""
    assert query.family is not None
    found = candidates(catalog.entries(), query.family, query.dtype)
    chosen = choose(found, query.family, query.dtype, max_bytes=query.max_bytes, max_params=query.max_params,
                    min_accuracy=query.min_accuracy)
    return catalog.get(chosen.arch), chosen.width
