"""/healthz, /readyz, /archs and /metrics."""

from __future__ import annotations

import hashlib

import httpx
from prometheus_client.parser import text_string_to_metric_families

from service.archs import param_count


def test_healthz(live_service):
    for path in ("/healthz", "/livez"):  # /livez: the same probe under the Kubernetes/BentoML name
        r = httpx.get(f"{live_service}{path}")
        assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_readyz_lists_checkpoints_and_cache(live_service):
    r = httpx.get(f"{live_service}/readyz")
    sha = hashlib.sha256(live_service.checkpoint.read_bytes()).hexdigest()
    assert r.status_code == 200
    assert r.json() == {"status": "ready", "checkpoints": [{"arch": "resnet20", "checkpoint": sha[:12]}],
                        "cache": "ok", "redis": "disabled", "backend": "torch"}


def test_readyz_is_503_without_checkpoints(make_live_service, tmp_path):
    service = make_live_service(checkpoints=[], checkpoint_dir=tmp_path)
    r = httpx.get(f"{service}/readyz")
    assert r.status_code == 503 and r.json()["status"] == "not_ready" and r.json()["checkpoints"] == []
    assert httpx.get(f"{service}/healthz").status_code == 200
    assert httpx.get(f"{service}/model", params={"arch": "resnet20", "width": 8}).json()["code"] == "unknown_arch"


def test_archs_describes_the_catalog(live_service):
    catalog = httpx.get(f"{live_service}/archs").json()
    entry = catalog["resnet20"]
    assert entry["scope"] == "all" and entry["widths"]["min"] == 1 and entry["widths"]["max"] == 64
    assert entry["input_shape"] == [1, 28, 28] and len(entry["labels"]) == 10
    assert entry["params"]["32"] == param_count("all", 32, 1, 10)
    assert set(entry["bytes"]) == {"float32", "float16", "int8", "int8-weights"}
    assert all(len(sizes) == 64 for sizes in entry["bytes"].values())
    for dtype, width in (("float32", 5), ("int8", 40), ("int8-weights", 40)):  # the files' real lengths
        served = httpx.get(f"{live_service}/model", params={"arch": "resnet20", "width": width, "dtype": dtype})
        assert len(served.content) == entry["bytes"][dtype][str(width)]
    sizes = [entry["bytes"][dtype]["40"] for dtype in ("int8-weights", "int8", "float16", "float32")]
    assert sizes == sorted(sizes) and len(set(sizes)) == 4


def test_metrics_count_requests_by_route_template(live_service):
    blob = httpx.get(f"{live_service}/model", params={"arch": "resnet20", "width": 8}).content
    httpx.get(f"{live_service}/model", params={"arch": "resnet20", "width": 99})
    httpx.get(f"{live_service}/random/path/123")
    r = httpx.get(f"{live_service}/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(r.text) for s in family.samples}

    def requests(route: str, status: str) -> float:
        return samples.get(("neumeta_http_requests_total",
                            (("method", "GET"), ("route", route), ("status", status))), 0.0)

    assert requests("/model", "200") == 1 and requests("/model", "422") == 1
    assert requests("unmatched", "404") == 1  # random paths share one label
    assert samples[("neumeta_generation_duration_seconds_count", (("arch", "resnet20"), ("backend", "torch")))] == 1
    assert samples[("neumeta_cache_events_total", (("event", "miss"), ("tier", "memory")))] == 1
    assert samples[("neumeta_generations_in_flight", ())] == 0
    # The embedded cache holds exactly the one blob served; the checkpoint in use is named.
    assert samples[("neumeta_cache_memory_entries", ())] == 1
    assert samples[("neumeta_cache_memory_bytes", ())] == len(blob)
    sha = hashlib.sha256(live_service.checkpoint.read_bytes()).hexdigest()[:12]
    assert samples[("neumeta_checkpoint_info", (("arch", "resnet20"), ("checkpoint", sha)))] == 1
