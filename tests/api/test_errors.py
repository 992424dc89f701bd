"""Every error code over real HTTP, request ids, API keys, and the worker pool's back-pressure."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from service.serving.pipeline import render
from tests.waiting import wait_until

MODEL = "/model"


def slow_render(service, seconds: float) -> None:
    """Make every generation of ``service`` take ``seconds`` longer."""

    def slow(request):
        time.sleep(seconds)
        return render(request)

    service.use_generator(slow)


def assert_error(r: httpx.Response, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"code", "message", "request_id"} and body["code"] == code
    assert r.headers["x-error-code"] == code and body["request_id"] == r.headers["x-request-id"]
    return body


def test_unknown_route_and_method(live_service):
    assert_error(httpx.get(f"{live_service}/nope"), 404, "not_found")
    assert_error(httpx.post(f"{live_service}/model?arch=resnet20&width=8"), 405, "method_not_allowed")


def test_internal_error_has_no_traceback_in_the_body(live_service, caplog):
    def broken(request):
        raise RuntimeError("secret detail from deep inside")

    live_service.use_generator(broken)
    r = httpx.get(f"{live_service}{MODEL}", params={"arch": "resnet20", "width": 8})
    body = assert_error(r, 500, "internal")
    assert "secret" not in r.text and "Traceback" not in r.text and "RuntimeError" not in r.text
    logged = [rec for rec in caplog.records if rec.name == "neumeta.error"]
    assert logged and logged[0].exc_info and logged[0].request_id == body["request_id"]
    live_service.use_generator(None)  # a failure is not cached: the next request generates
    assert httpx.get(f"{live_service}{MODEL}", params={"arch": "resnet20", "width": 8}).status_code == 200


def gated_render(service) -> threading.Event:
    """Hold every generation of ``service`` until the returned event is set (at most 60 s, so a failing
    test cannot hang): a test decides when the first one ends instead of racing a fixed sleep."""
    gate = threading.Event()

    def gated(request):
        gate.wait(timeout=60)
        return render(request)

    service.use_generator(gated)
    return gate


def test_busy_when_workers_and_queue_are_full(make_live_service):
    service = make_live_service(max_concurrent_generations=1, max_queued_generations=0, retry_after_s=7)
    gate = gated_render(service)
    responses: dict[str, httpx.Response] = {}

    def fetch(name: str, width: int) -> threading.Thread:
        def get() -> None:
            responses[name] = httpx.get(f"{service}{MODEL}", params={"arch": "resnet20", "width": width}, timeout=90)
        thread = threading.Thread(target=get)
        thread.start()
        return thread

    first = fetch("first", 10)
    wait_until(lambda: service.metric("neumeta_generations_in_flight") == 1, "the first generation starts")
    r = httpx.get(f"{service}{MODEL}", params={"arch": "resnet20", "width": 11}, timeout=30)
    assert_error(r, 503, "busy")
    assert r.headers["retry-after"] == "7"
    # The same width joins the running generation instead of being refused. The gate stays shut
    # long enough for the request to arrive (seconds; it needs milliseconds) on a loaded machine.
    same = fetch("same", 10)
    threading.Timer(3.0, gate.set).start()
    first.join(), same.join()
    assert responses["same"].status_code == 200 and responses["same"].headers["x-cache"] == "coalesced"
    assert responses["first"].status_code == 200 and responses["first"].headers["x-cache"] == "miss"


def test_a_generation_that_outlives_its_request_is_kept_for_the_retry(make_live_service):
    service = make_live_service(generation_timeout_s=0.5)
    slow_render(service, 2.0)  # four timeouts long, as the 6 s model behind a 3 s timeout
    params = {"arch": "resnet20", "width": 12}
    r = httpx.get(f"{service}{MODEL}", params=params, timeout=30)
    assert "still being generated" in assert_error(r, 503, "busy")["message"]
    wait_until(lambda: service.metric("neumeta_generations_total", arch="resnet20", backend="torch") == 1,
               "the generation finishes although its request gave up")
    retry = httpx.get(f"{service}{MODEL}", params=params, timeout=30)
    assert retry.status_code == 200 and retry.headers["x-cache"] == "hit"
    assert service.metric("neumeta_generations_total", arch="resnet20", backend="torch") == 1


def test_retry_after_of_a_running_generation_is_its_expected_remaining_time(make_live_service):
    service = make_live_service(generation_timeout_s=0.5, retry_after_s=30)
    slow_render(service, 2.0)
    params = {"arch": "resnet20", "width": 13}
    first = httpx.get(f"{service}{MODEL}", params=params, timeout=30)
    assert first.status_code == 503 and first.headers["retry-after"] == "30"  # nothing measured yet
    wait_until(lambda: service.metric("neumeta_generations_total", arch="resnet20", backend="torch") == 1,
               "the first generation finishes")  # now the pool knows a generation takes ~2 s
    started = time.monotonic()
    r = httpx.get(f"{service}{MODEL}", params={**params, "width": 14}, timeout=30)
    assert_error(r, 503, "busy")
    # ~2 s of generation (plus the real work), 0.5 s of it waited: Retry-After names the rest, not 30.
    assert 1 <= int(r.headers["retry-after"]) <= 4
    time.sleep(max(0.0, started + int(r.headers["retry-after"]) + 0.5 - time.monotonic()))
    wait_until(lambda: service.metric("neumeta_generations_total", arch="resnet20", backend="torch") == 2,
               "the second generation finishes")
    again = httpx.get(f"{service}{MODEL}", params={**params, "width": 14}, timeout=30)
    assert again.status_code == 200 and again.headers["x-cache"] == "hit"


def test_api_keys_guard_model_and_archs_only(make_live_service):
    service = make_live_service(api_keys=["key-one", "key-two"])
    params = {"arch": "resnet20", "width": 8}
    for path in (MODEL, "/archs"):
        r = httpx.get(f"{service}{path}", params=params)
        assert_error(r, 401, "unauthorized")
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert_error(httpx.get(f"{service}{path}", params=params, headers={"Authorization": "Bearer nope"}),
                     401, "unauthorized")
        assert_error(httpx.get(f"{service}{path}", params=params, headers={"Authorization": "Basic a2V5LXR3bw=="}),
                     401, "unauthorized")
        ok = httpx.get(f"{service}{path}", params=params, headers={"Authorization": "Bearer key-two"}, timeout=30)
        assert ok.status_code == 200
    for path in ("/healthz", "/readyz", "/metrics"):
        assert httpx.get(f"{service}{path}").status_code == 200


def test_api_keys_off_by_default(live_service):
    assert httpx.get(f"{live_service}/archs").status_code == 200


@pytest.mark.parametrize(("sent", "echoed"), [("trace-abc.123:x", True), ("x" * 129, False), ("has space", False)])
def test_request_id_is_echoed_only_when_sane(live_service, sent, echoed):
    r = httpx.get(f"{live_service}/nope", headers={"X-Request-ID": sent})
    assert (r.headers["x-request-id"] == sent) is echoed
    assert r.json()["request_id"] == r.headers["x-request-id"]


def test_request_id_is_made_when_absent(live_service):
    a, b = httpx.get(f"{live_service}/healthz"), httpx.get(f"{live_service}/healthz")
    assert len(a.headers["x-request-id"]) == 32 and a.headers["x-request-id"] != b.headers["x-request-id"]


async def test_validation_errors_map_to_documented_codes():
    from fastapi.exceptions import RequestValidationError
    from starlette.requests import Request

    from service.api.errors import _validation_error

    request = Request({"type": "http", "method": "GET", "path": "/", "headers": [], "state": {"request_id": "r1"}})
    width = RequestValidationError([{"loc": ("query", "width"), "msg": "not an int", "type": "int_parsing"}])
    other = RequestValidationError([{"loc": ("query", "dtype"), "msg": "bad", "type": "literal_error"}])
    for exc, code in ((width, "width_out_of_range"), (other, "invalid_parameter")):
        r = await _validation_error(request, exc)
        assert r.status_code == 422 and r.headers["x-error-code"] == code
        assert b'"request_id":"r1"' in r.body
