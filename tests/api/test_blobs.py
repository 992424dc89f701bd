"""The two URLs of a model: mutable ``/model?...`` (no-cache) and immutable ``/blobs/sha256/<hex>``,
plus HEAD on every GET route and If-Match, against the real service."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from tests.factories import tiny_checkpoint

MODEL_HEADERS = ("etag", "x-model-sha256", "x-model-arch", "x-model-width", "x-model-params", "x-model-dtype",
                 "x-model-samples", "x-checkpoint", "content-disposition", "accept-ranges")


def model(service: str, headers: dict[str, str] | None = None, method: str = "GET", **params: object) -> httpx.Response:
    return httpx.request(method, f"{service}/model", params={"arch": "resnet20", **params}, headers=headers,
                         timeout=60)


def blob(service: str, location: str, headers: dict[str, str] | None = None, method: str = "GET") -> httpx.Response:
    return httpx.request(method, f"{service}{location}", headers=headers, timeout=60)


def test_content_location_serves_the_same_bytes_marked_immutable(live_service):
    current = model(live_service, width=12, dtype="float16")
    location = current.headers["content-location"]
    pinned = blob(live_service, location)
    assert pinned.status_code == 200 and pinned.content == current.content
    assert location == f"/blobs/sha256/{hashlib.sha256(current.content).hexdigest()}"
    assert current.headers["cache-control"] == "no-cache"
    assert pinned.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert "content-location" not in pinned.headers
    assert {h: pinned.headers[h] for h in MODEL_HEADERS} == {h: current.headers[h] for h in MODEL_HEADERS}
    assert pinned.headers["x-cache"] == "hit"  # no second generation
    assert live_service.metric("neumeta_generations_total", arch="resnet20", backend="torch") == 1


def test_blob_answers_head_ranges_and_conditionals_like_model(live_service):
    current = model(live_service, width=10)
    location, etag, size = current.headers["content-location"], current.headers["etag"], len(current.content)
    head = blob(live_service, location, method="HEAD")
    assert head.status_code == 200 and head.content == b"" and head.headers["content-length"] == str(size)
    part = blob(live_service, location, {"Range": "bytes=5-", "If-Range": etag})
    assert part.status_code == 206 and part.content == current.content[5:]
    assert part.headers["content-range"] == f"bytes 5-{size - 1}/{size}"
    assert blob(live_service, location, {"If-None-Match": etag}).status_code == 304
    assert blob(live_service, location, {"Range": f"bytes={size}-"}).status_code == 416


@pytest.mark.parametrize("digest", ["0" * 64, "A" * 64, "abc", "0" * 65])
def test_unknown_or_malformed_digest_is_a_coded_404(live_service, digest):
    r = blob(live_service, f"/blobs/sha256/{digest}")
    assert r.status_code == 404 and r.headers["x-error-code"] == "blob_not_found"
    assert r.json()["code"] == "blob_not_found" and r.json()["request_id"] == r.headers["x-request-id"]


def test_an_evicted_blob_is_made_again_from_its_recipe(make_live_service):
    service = make_live_service(cache_max_bytes=0)  # nothing stays cached
    current = model(service, width=9)
    pinned = blob(service, current.headers["content-location"])
    assert pinned.status_code == 200 and pinned.content == current.content
    assert service.metric("neumeta_generations_total", arch="resnet20", backend="torch") == 2


def test_a_replica_on_another_checkpoint_does_not_serve_the_old_digest(make_live_service, tmp_path):
    old = make_live_service()
    location = model(old, width=8).headers["content-location"]
    new = make_live_service(tiny_checkpoint(tmp_path / "other.safetensors", seed=7))
    r = blob(new, location)
    assert r.status_code == 404 and r.headers["x-error-code"] == "blob_not_found"
    assert model(new, width=8).headers["content-location"] != location


def test_blobs_need_the_same_api_key_as_model(make_live_service):
    service = make_live_service(api_keys=["key-one"])
    auth = {"Authorization": "Bearer key-one"}
    location = model(service, auth, width=8).headers["content-location"]
    refused = blob(service, location)
    assert refused.status_code == 401 and refused.headers["x-error-code"] == "unauthorized"
    assert blob(service, location, auth).status_code == 200


@pytest.mark.parametrize("path", ["/model?arch=resnet20&width=8", "/blobs/sha256/{sha}"])
def test_if_match_mismatch_is_412_and_a_match_serves(live_service, path):
    current = model(live_service, width=8)
    url = path.format(sha=current.headers["x-model-sha256"])
    etag = current.headers["etag"]
    for header in ('"' + "0" * 64 + '"', "W/" + etag):  # another file; a weak tag never matches strongly
        r = httpx.get(f"{live_service}{url}", headers={"If-Match": header})
        assert r.status_code == 412 and r.headers["x-error-code"] == "precondition_failed"
    for header in (etag, "*", f'"x", {etag}'):
        r = httpx.get(f"{live_service}{url}", headers={"If-Match": header})
        assert r.status_code == 200 and r.content == current.content


@pytest.mark.parametrize("path", ["/healthz", "/livez", "/readyz", "/archs", "/metrics", "/model?arch=resnet20"])
def test_head_works_wherever_get_does(live_service, path):
    get = httpx.get(f"{live_service}{path}", timeout=60)
    head = httpx.head(f"{live_service}{path}", timeout=60)
    assert get.status_code == head.status_code == 200 and head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    if path != "/metrics":  # the metrics text grows between the two calls
        assert head.headers["content-length"] == get.headers["content-length"]
