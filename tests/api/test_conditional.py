"""Range and conditional-request parsing (RFC 9110), without a server."""

from __future__ import annotations

import pytest

from service.api.conditional import ByteRange, Unsatisfiable, none_match, parse_range, range_applies

ETAG = '"' + "a" * 64 + '"'


@pytest.mark.parametrize(("header", "expected"), [
    ("bytes=0-9", ByteRange(0, 10)),
    ("bytes=10-", ByteRange(10, 100)),
    ("bytes=90-500", ByteRange(90, 100)),  # clipped to the end
    ("bytes=-10", ByteRange(90, 100)),
    ("bytes=-500", ByteRange(0, 100)),
    (None, None), ("", None), ("bytes=1-2,5-6", None), ("bytes=x-", None), ("bytes=5-2", None),
    ("bytes=" + "9" * 40 + "-", None),  # absurd lengths are malformed, not parsed
])
def test_parse_range(header, expected):
    assert parse_range(header, 100) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=500-600", "bytes=-0"])
def test_unsatisfiable(header):
    with pytest.raises(Unsatisfiable):
        parse_range(header, 100)


def test_content_range():
    assert ByteRange(90, 100).content_range(100) == "bytes 90-99/100"


def test_none_match_is_weak_and_takes_lists():
    assert none_match(ETAG, ETAG) and none_match("W/" + ETAG, ETAG) and none_match("*", ETAG)
    assert none_match('"x", ' + ETAG, ETAG)
    assert not none_match('"x"', ETAG) and not none_match(None, ETAG)


def test_if_range_is_strong():
    assert range_applies(None, ETAG) and range_applies(ETAG, ETAG)
    assert not range_applies("W/" + ETAG, ETAG) and not range_applies("Wed, 21 Oct 2015 07:28:00 GMT", ETAG)
