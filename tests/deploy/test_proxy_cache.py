"""deploy/nginx/nginx.conf's proxy_cache in front of a real service: the immutable URLs are cached,
the mutable /model is revalidated by the service on every request, so a checkpoint swap reaches
the next request (it did not when /model claimed to be immutable)."""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.factories import tiny_checkpoint

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx not installed")]
MODEL = {"arch": "resnet20", "width": 16}


def until_cached(client: httpx.Client, location: str, **kwargs) -> httpx.Response:
    """GET ``location`` until the proxy answers from its cache (nginx commits an entry just after the
    response that filled it ends, so a request right behind it may still miss)."""
    deadline = time.monotonic() + 10
    while True:
        r = client.get(location, **kwargs)
        if r.headers.get("x-cache-status") == "HIT" or time.monotonic() > deadline:
            return r
        time.sleep(0.05)


@pytest.fixture
def proxied(start_nginx, make_live_service) -> tuple[str, object, Callable[[Path], object]]:
    """(proxy URL, the service, restart(checkpoint) -> the new service on the same port)."""
    service = make_live_service()
    port = int(service.url.rsplit(":", 1)[1])
    url = start_nginx([f"127.0.0.1:{port}"])

    def restart(checkpoint: Path):
        service.stop()
        return make_live_service(checkpoint, port=port)

    return url, service, restart


def test_a_checkpoint_swap_reaches_the_next_request_through_the_cache(proxied, tmp_path):
    url, service, restart = proxied
    with httpx.Client(base_url=url, timeout=60) as client:
        old = client.get("/model", params=MODEL)
        assert old.status_code == 200 and old.headers["cache-control"] == "no-cache"
        location = old.headers["content-location"]
        first, second = client.get(location), until_cached(client, location)
        assert (first.headers["x-cache-status"], second.headers["x-cache-status"]) == ("MISS", "HIT")
        assert second.content == old.content and second.headers["cache-control"].endswith("immutable")
        assert second.headers["x-model-sha256"] == hashlib.sha256(old.content).hexdigest()
        # The device's revalidation reaches the service, which answers 304 from its digest index.
        assert client.get("/model", params=MODEL, headers={"If-None-Match": old.headers["etag"]}).status_code == 304

        restart(tiny_checkpoint(tmp_path / "new.safetensors", seed=11))  # a new checkpoint, same address
        new = client.get("/model", params=MODEL)
        assert new.status_code == 200 and new.content != old.content
        assert new.headers["x-checkpoint"] != old.headers["x-checkpoint"]
        revalidated = client.get("/model", params=MODEL, headers={"If-None-Match": old.headers["etag"]})
        assert revalidated.status_code == 200 and revalidated.content == new.content  # not a stale 304
        assert client.get("/model", params=MODEL, headers={"Cache-Control": "no-cache"}).content == new.content
        # The new model's immutable URL is a new name; the old one still names the old bytes.
        pinned = client.get(new.headers["content-location"])
        assert pinned.content == new.content and pinned.headers["cache-control"].endswith("immutable")
        assert client.get(location).content == old.content


def test_ranges_and_conditionals_on_a_cached_blob_are_answered_by_the_proxy(proxied):
    url, service, _ = proxied
    with httpx.Client(base_url=url, timeout=60) as client:
        model = client.get("/model", params=MODEL)
        location, etag, size = model.headers["content-location"], model.headers["etag"], len(model.content)
        until_cached(client, location)
        served_before = service.metric("neumeta_http_requests_total", route="/blobs/sha256/{digest}",
                                       method="GET", status="200")
        part = client.get(location, headers={"Range": "bytes=10-", "If-Range": etag})
        assert part.status_code == 206 and part.content == model.content[10:]
        assert part.headers["content-range"] == f"bytes 10-{size - 1}/{size}"
        assert client.get(location, headers={"If-None-Match": etag}).status_code == 304
        assert client.get(location, headers={"If-Match": '"' + "0" * 64 + '"'}).status_code == 412
        after = service.metric("neumeta_http_requests_total", route="/blobs/sha256/{digest}",
                               method="GET", status="200")
        assert after == served_before  # all from the proxy's cache


def test_an_unknown_blob_is_not_cached_and_keys_are_enforced(start_nginx, make_live_service):
    service = make_live_service(api_keys=["key-one"])
    url = start_nginx([service.url.removeprefix("http://")])
    with httpx.Client(base_url=url, timeout=60) as client:
        auth = {"Authorization": "Bearer key-one"}
        missing = client.get(f"/blobs/sha256/{'0' * 64}", headers=auth)
        assert missing.status_code == 404 and missing.headers["x-error-code"] == "blob_not_found"
        assert client.get(f"/blobs/sha256/{'0' * 64}", headers=auth).headers["x-cache-status"] == "MISS"
        location = client.get("/model", params=MODEL, headers=auth).headers["content-location"]
        assert client.get(location, headers=auth).status_code == 200
        assert until_cached(client, location, headers=auth).headers["x-cache-status"] == "HIT"
        refused = client.get(location)  # cached, but not for a request without the key
        assert refused.status_code == 401 and refused.headers["x-error-code"] == "unauthorized"
