"""One request path: a ``/model`` miss parses once, resolves once, generates once and hashes its body
once; a hit generates and hashes nothing. Counted on a real server with spies on each step."""

from __future__ import annotations

import hashlib
from collections import Counter

import httpx
import pytest

from service.api.routes import model as model_route
from service.archs import param_count
from service.serving import request as request_module
from service.serving import selection
from service.serving.pipeline import render

PARAMS = {"arch": "resnet20", "width": 20, "dtype": "float16", "samples": 2}


class Steps:
    """Counts what the request path does; ``bodies`` are the byte strings that were hashed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: Counter[str] = Counter()
        self.bodies: list[bytes] = []
        for module, name in ((model_route, "parse_model_query"), (model_route, "select"),
                             (selection, "resolve_samples"), (selection, "check_width"),
                             (request_module, "cached_param_count")):
            monkeypatch.setattr(module, name, self._counted(name, getattr(module, name)))
        real_sha256 = hashlib.sha256

        def sha256(data: bytes = b"", **kwargs):
            self.bodies.append(bytes(data))
            return real_sha256(data, **kwargs)

        monkeypatch.setattr(hashlib, "sha256", sha256)

    def _counted(self, name: str, fn):
        def counted(*args, **kwargs):
            self.calls[name] += 1
            return fn(*args, **kwargs)

        return counted

    def generator(self, request):
        self.calls["generate"] += 1
        return render(request)

    def hashes_of(self, body: bytes) -> int:
        return sum(1 for hashed in self.bodies if hashed == body)


@pytest.fixture
def steps(monkeypatch):
    return Steps(monkeypatch)


def test_a_miss_parses_resolves_generates_and_hashes_once_and_a_hit_does_no_work(live_service, steps):
    live_service.use_generator(steps.generator)
    miss = httpx.get(f"{live_service}/model", params=PARAMS, timeout=60)
    assert miss.status_code == 200 and miss.headers["x-cache"] == "miss"
    assert steps.calls == {"parse_model_query": 1, "select": 1, "resolve_samples": 1, "check_width": 1,
                           "cached_param_count": 1, "generate": 1}
    assert steps.hashes_of(miss.content) == 1
    # What travelled to the headers is what the generation made, not a recount.
    assert miss.headers["x-model-sha256"] == hashlib.new("sha256", miss.content).hexdigest()
    assert miss.headers["x-model-params"] == str(param_count("all", 20, 1, 10))
    assert miss.headers["x-model-samples"] == "2" and miss.headers["x-model-dtype"] == "float16"

    steps.calls.clear()
    hit = httpx.get(f"{live_service}/model", params=PARAMS, timeout=60)
    assert hit.status_code == 200 and hit.headers["x-cache"] == "hit" and hit.content == miss.content
    assert steps.calls["generate"] == 0 and steps.calls["parse_model_query"] == 1 and steps.calls["select"] == 1
    assert steps.hashes_of(miss.content) == 1  # still the miss's one
    assert {k: hit.headers[k] for k in ("etag", "x-model-sha256", "x-model-params", "content-location")} == {
        k: miss.headers[k] for k in ("etag", "x-model-sha256", "x-model-params", "content-location")}

    pinned = httpx.get(f"{live_service}{miss.headers['content-location']}", timeout=60)
    assert pinned.status_code == 200 and pinned.content == miss.content
    revalidated = httpx.get(f"{live_service}/model", params=PARAMS, headers={"If-None-Match": miss.headers["etag"]})
    assert revalidated.status_code == 304
    assert steps.calls["generate"] == 0 and steps.hashes_of(miss.content) == 1


def test_a_budget_request_resolves_its_width_once(live_service, steps):
    live_service.use_generator(steps.generator)
    r = httpx.get(f"{live_service}/model", params={"arch": "resnet20", "max_params": 50_000}, timeout=60)
    assert r.status_code == 200 and r.headers["x-cache"] == "miss"
    assert steps.calls["parse_model_query"] == 1 and steps.calls["select"] == 1 and steps.calls["resolve_samples"] == 1
    assert steps.calls["check_width"] == 0  # the search only visits allowed widths
    assert steps.calls["generate"] == 1 and steps.hashes_of(r.content) == 1


@pytest.mark.redis
def test_a_replica_reading_redis_takes_the_digest_from_the_envelope_check(make_live_service, redis_server, steps):
    first = make_live_service(redis_url=redis_server.url)
    second = make_live_service(redis_url=redis_server.url)
    first.use_generator(steps.generator)
    second.use_generator(steps.generator)
    made = httpx.get(f"{first}/model", params=PARAMS, timeout=60)
    assert made.headers["x-cache"] == "miss" and steps.hashes_of(made.content) == 1  # stored without rehashing
    read = httpx.get(f"{second}/model", params=PARAMS, timeout=60)
    assert read.headers["x-cache"] == "hit" and read.content == made.content
    assert read.headers["x-model-sha256"] == made.headers["x-model-sha256"]
    assert steps.calls["generate"] == 1 and steps.hashes_of(made.content) == 2  # + the read's integrity check
