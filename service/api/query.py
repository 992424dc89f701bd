"""Strict parsing of ``/model`` query strings.

Query values arrive from anyone, so they are parsed by hand rather than coerced: an integer is
an optional minus sign and at most ``MAX_DIGITS`` ASCII digits (no ``1e3``, ``NaN``, ``+5``,
``4.0``, spaces or non-ASCII digits such as ``٣٢``), every parameter appears at most once, and
unknown parameters are refused so that a typo (``widht=32``) is reported rather than ignored.
A well-formed integer outside a range is ``width_out_of_range`` for widths and
``invalid_parameter`` for everything else; anything malformed is ``invalid_parameter``.

A request names either an ``arch`` (one checkpoint: a width, or the largest width within one
budget) or a ``family`` (service/serving/families.py: across its archs, by ``max_bytes``, ``max_params``
and ``min_accuracy``, all of which must hold). A family request picks the arch and the width from
the measured tables, so ``width`` and ``samples`` (the tables hold the default K's files) are refused.
"""

from __future__ import annotations

import re

from starlette.datastructures import QueryParams

from service.errors import InvalidParameter, WidthOutOfRange
from service.export import DTYPES
from service.serving.request import ModelQuery

MAX_DIGITS = 18  # fits an int64 budget; longer numbers are treated as "huge", never int()-parsed
HUGE: int = 10**MAX_DIGITS
_INTEGER = re.compile(r"-?[0-9]+")  # [0-9], not \d: \d also matches Unicode digits
_ARCH = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")  # the catalog id pattern of the manifest, bounded
# A percentage as /archs writes it (92.44, 90, 0.5): no exponent, no "+", at most 3 + 6 digits; a
# minus sign parses so that the message can say the value is out of range.
_PERCENT = re.compile(r"-?[0-9]{1,3}(\.[0-9]{1,6})?")

KNOWN = ("arch", "family", "width", "dtype", "samples", "max_params", "max_bytes", "min_accuracy")
SELECTORS = ("width", "max_params", "max_bytes")


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


def parse_percent(name: str, raw: str) -> float:
    """An accuracy in percent, 0..100, written as a plain decimal."""
    if not _PERCENT.fullmatch(raw):
        raise InvalidParameter(f"{name} must be a percentage written as a plain decimal (e.g. 92.5), got {_show(raw)}")
    value = float(raw)
    if not 0 <= value <= 100:
        raise InvalidParameter(f"{name} is a percentage in 0..100, got {_show(raw)}")
    return value


def _parse_catalog_name(params: QueryParams) -> tuple[str | None, str | None]:
    """``(arch, family)``: exactly one of them, each a well-formed id."""
    arch, family = params.get("arch"), params.get("family")
    if arch is None and family is None:
        raise InvalidParameter("parameter 'arch' (one checkpoint) or 'family' (the best of its archs) is required "
                               "(see GET /archs)")
    if arch is not None and family is not None:
        raise InvalidParameter("give arch or family, not both: family chooses the arch")
    for name, value in (("arch", arch), ("family", family)):
        if value is not None and not _ARCH.fullmatch(value):
            raise InvalidParameter(f"{name} must be a catalog id like 'resnet20', got {_show(value)}")
    return arch, family


def parse_model_query(params: QueryParams) -> ModelQuery:
    """Validate the raw query string of ``GET /model``; raises the documented typed errors."""
    for key in params:
        if key not in KNOWN:
            raise InvalidParameter(f"unknown parameter {_show(key)}; accepted: {', '.join(KNOWN)}")
        if len(params.getlist(key)) > 1:
            raise InvalidParameter(f"parameter {key!r} is given more than once")
    arch, family = _parse_catalog_name(params)
    dtype = params.get("dtype", "float32")
    if dtype not in DTYPES:
        raise InvalidParameter(f"dtype must be one of {', '.join(DTYPES)}, got {_show(dtype)}")
    if family is not None:
        for refused, why in (("width", "the family request chooses the arch and the width"),
                             ("samples", "the measured tables hold each arch's default K")):
            if refused in params:
                raise InvalidParameter(f"{refused} cannot be combined with family: {why}; ask for an arch instead")
    elif "min_accuracy" in params:
        raise InvalidParameter("min_accuracy chooses across a family: use family=<id> instead of arch")
    chosen = [name for name in SELECTORS if name in params]
    if arch is not None and len(chosen) > 1:  # none is fine: the arch's default width (GET /archs)
        raise InvalidParameter(f"give at most one of width, max_params or max_bytes (got {', '.join(chosen)})")
    values = {name: parse_int(name, params[name]) for name in ("width", "samples", "max_params", "max_bytes")
              if name in params}
    for name in ("max_params", "max_bytes"):
        if name in values and values[name] < 1:
            raise InvalidParameter(f"{name} must be a positive integer, got {values[name]}")
    if "width" in values and values["width"] < 1:
        raise WidthOutOfRange(f"width must be a positive integer, got {_show(params['width'])}")
    min_accuracy = parse_percent("min_accuracy", params["min_accuracy"]) if "min_accuracy" in params else None
    return ModelQuery(arch=arch, family=family, dtype=dtype, min_accuracy=min_accuracy, **values)
