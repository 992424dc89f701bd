"""Pure pieces: Retry-After parsing, backoff bounds, error mapping, request validation and cache keys."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import neumeta_client as nc
import pytest
from neumeta_client._protocol import ModelHeaders, ModelRequest, error_from_response
from neumeta_client._retry import RetryPolicy, RetryState, parse_retry_after


def test_retry_after_accepts_seconds_and_http_dates():
    now = datetime(2026, 11, 23, 1, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


def test_backoff_is_full_jitter_under_a_doubling_cap_and_stops_at_the_bound():
    policy = RetryPolicy(retries=5, backoff_base_s=1.0, backoff_max_s=4.0, total_s=1e9)
    for seed in range(50):
        state = RetryState(policy, rng=random.Random(seed))
        delays = [state.delay_before_retry() for _ in range(6)]
        caps = [1.0, 2.0, 4.0, 4.0, 4.0]
        assert all(0.0 <= d <= cap for d, cap in zip(delays[:5], caps, strict=True))
        assert delays[5] is None
    # jitter really spreads clients out: many distinct first delays across seeds
    firsts = {RetryState(policy, rng=random.Random(s)).delay_before_retry() for s in range(50)}
    assert len(firsts) == 50


def test_retry_after_overrides_jitter_but_not_the_deadline():
    clock = iter([0.0, 0.0, 9.5]).__next__
    state = RetryState(RetryPolicy(retries=5, total_s=10.0), clock=clock)
    assert state.delay_before_retry(retry_after=2.0) == 2.0
    assert state.delay_before_retry(retry_after=2.0) is None  # 9.5 + 2 > 10


def _response(status: int, body: object = None, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers or {})


@pytest.mark.parametrize(("status", "error"), [
    (404, nc.UnknownArch), (422, nc.InvalidParameter), (401, nc.Unauthorized),
    (503, nc.Busy), (429, nc.Busy), (500, nc.ServerError), (502, nc.ServerError), (418, nc.UnexpectedResponse),
])
def test_status_is_the_fallback_when_no_error_code_came_back(status, error):
    assert type(error_from_response(_response(status))) is error


def test_x_error_code_wins_over_status_and_body_fields_are_kept():
    response = _response(422, {"code": "width_out_of_range", "message": "width 999 > 64", "request_id": "r1"},
                         {"X-Error-Code": "width_out_of_range"})
    error = error_from_response(response)
    assert type(error) is nc.WidthOutOfRange
    assert (error.message, error.request_id, error.status) == ("width 999 > 64", "r1", 422)
    assert "r1" in str(error)


@pytest.mark.parametrize(("status", "error"), [(404, nc.UnexpectedResponse), (500, nc.ServerError)])
def test_an_unknown_code_is_not_mistaken_for_a_known_one(status, error):
    # A wrong base URL answers the service's own 404 `not_found`: that is no unknown arch.
    response = _response(status, {"code": "not_found", "message": "no route"}, {"X-Error-Code": "not_found"})
    assert type(error_from_response(response)) is error


def test_busy_carries_retry_after_from_the_header():
    error = error_from_response(_response(503, {"code": "busy"}, {"X-Error-Code": "busy", "Retry-After": "3"}))
    assert isinstance(error, nc.Busy) and error.retry_after == 3.0


def test_model_headers_require_a_sha256():
    ok = httpx.Response(200, headers={"ETag": '"' + "a" * 64 + '"', "Content-Length": "10"})
    assert ModelHeaders.parse(ok).sha256 == "a" * 64 and ModelHeaders.parse(ok).length == 10
    with pytest.raises(nc.UnexpectedResponse):
        ModelHeaders.parse(httpx.Response(200, headers={"ETag": '"not-a-hash"'}))


def test_cache_keys_separate_servers_and_requests_and_are_file_safe():
    a = httpx.URL("http://edge-1:8000")
    keys = {
        ModelRequest("resnet20", 8).cache_key(a),
        ModelRequest("resnet20", 8).cache_key(httpx.URL("http://edge-2:8000")),
        ModelRequest("resnet20", 8, dtype="int8").cache_key(a),
        ModelRequest("resnet20", 8, samples=3).cache_key(a),
        ModelRequest("resnet20", max_params=8).cache_key(a),
        ModelRequest("resnet20").cache_key(a),
        ModelRequest("../etc/passwd", 8).cache_key(a),
    }
    assert len(keys) == 7
    assert all("/" not in k and len(k) < 200 for k in keys)  # one path component, whatever the arch says


@pytest.mark.parametrize("kwargs", [
    {"width": 8, "max_bytes": 100}, {"width": -1}, {"width": True}, {"samples": 0}, {"dtype": "fp8"},
    {"width": 2.5}, {"min_accuracy": 90}, {"family": "resnet20"},
])
def test_bad_requests_are_refused_locally(kwargs):
    with pytest.raises(nc.InvalidParameter):
        ModelRequest("resnet20", **kwargs)


@pytest.mark.parametrize("kwargs", [
    {}, {"width": 8}, {"samples": 2}, {"min_accuracy": 100.5}, {"min_accuracy": -1}, {"min_accuracy": True},
    {"min_accuracy": "90"}, {"max_bytes": 0},
])
def test_bad_family_requests_are_refused_locally(kwargs):
    with pytest.raises(nc.InvalidParameter):
        ModelRequest(**{"family": "resnet20", **kwargs} if kwargs else {})


def test_family_requests_send_every_constraint_and_key_apart():
    a = httpx.URL("http://edge-1:8000")
    request = ModelRequest(family="resnet20", max_bytes=600_000, max_params=90_000, min_accuracy=92.4)
    assert request.params() == {"family": "resnet20", "dtype": "float32", "max_bytes": "600000",
                                "max_params": "90000", "min_accuracy": "92.4"}
    assert ModelRequest(family="resnet20", min_accuracy=1e-7).params()["min_accuracy"] == "0"  # no exponent
    keys = {request.cache_key(a), ModelRequest(family="resnet20", max_bytes=600_000).cache_key(a),
            ModelRequest(family="resnet20", min_accuracy=92.4).cache_key(a),
            ModelRequest("resnet20", max_bytes=600_000).cache_key(a)}
    assert len(keys) == 4 and all("/" not in k for k in keys)
