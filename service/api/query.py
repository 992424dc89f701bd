"""Strict parsing of ``/model`` query strings.

Query values arrive from anyone, so they are parsed by hand rather than coerced: an integer is
an optional minus sign and at most ``MAX_DIGITS`` ASCII digits (no ``1e3``, ``NaN``, ``+5``,
``4.0``, spaces or non-ASCII digits such as ``٣٢``), every parameter appears at most once, and
unknown parameters are refused so that a typo (``widht=32``) is reported rather than ignored.
A well-formed integer outside a range is ``width_out_of_range`` for widths and
``invalid_parameter`` for everything else; anything malformed is ``invalid_parameter``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from starlette.datastructures import QueryParams

from service.errors import InvalidParameter, WidthOutOfRange
from service.export import DTYPES

MAX_DIGITS = 18  # fits an int64 budget; longer numbers are treated as "huge", never int()-parsed
HUGE = 10**MAX_DIGITS
_INTEGER = re.compile(r"-?[0-9]+")  # [0-9], not \d: \d also matches Unicode digits
_ARCH = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")  # the catalog id pattern of the manifest, bounded

KNOWN = ("arch", "width", "dtype", "samples", "max_params", "max_bytes")
SELECTORS = ("width", "max_params", "max_bytes")


@dataclass(frozen=True)
class ModelQuery:
    arch: str
    dtype: str = "float32"
    width: int | None = None
    samples: int | None = None
    max_params: int | None = None
    max_bytes: int | None = None


def _show(value: str) -> str:
    return repr(value if len(value) <= 32 else value[:32] + "...")


def parse_int(name: str, raw: str) -> int:
    """Plain decimal integer; a number with more than MAX_DIGITS digits becomes +-HUGE."""
    if not _INTEGER.fullmatch(raw):
        raise InvalidParameter(f"{name} must be a decimal integer, got {_show(raw)}")
    digits = raw.lstrip("-")
    if len(digits) > MAX_DIGITS:
        return -HUGE if raw.startswith("-") else HUGE
    return int(raw)


def parse_model_query(params: QueryParams) -> ModelQuery:
    """Validate the raw query string of ``GET /model``; raises the documented typed errors."""
    for key in params:
        if key not in KNOWN:
            raise InvalidParameter(f"unknown parameter {_show(key)}; accepted: {', '.join(KNOWN)}")
        if len(params.getlist(key)) > 1:
            raise InvalidParameter(f"parameter {key!r} is given more than once")
    arch = params.get("arch")
    if arch is None:
        raise InvalidParameter("parameter 'arch' is required (see GET /archs)")
    if not _ARCH.fullmatch(arch):
        raise InvalidParameter(f"arch must be a catalog id like 'resnet20', got {_show(arch)}")
    dtype = params.get("dtype", "float32")
    if dtype not in DTYPES:
        raise InvalidParameter(f"dtype must be one of {', '.join(DTYPES)}, got {_show(dtype)}")
    chosen = [name for name in SELECTORS if name in params]
    if len(chosen) > 1:  # none is fine: the arch's default width (GET /archs)
        raise InvalidParameter(f"give at most one of width, max_params or max_bytes (got {', '.join(chosen)})")
    values = {name: parse_int(name, params[name]) for name in ("width", "samples", "max_params", "max_bytes")
              if name in params}
    for name in ("max_params", "max_bytes"):
        if name in values and values[name] < 1:
            raise InvalidParameter(f"{name} must be a positive integer, got {values[name]}")
    if "width" in values and values["width"] < 1:
        raise WidthOutOfRange(f"width must be a positive integer, got {_show(params['width'])}")
    return ModelQuery(arch=arch, dtype=dtype, **values)
