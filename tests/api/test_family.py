"""GET /model?family=...: the right model across a family, checked against GET /archs on the real service.

The service runs on both shipped checkpoints (``resnet20``, scope all, and ``resnet20-last``), whose
manifests hold measured accuracies. Every expected choice is recomputed here, by brute force over
the tables ``/archs`` publishes, from the rule the API states: under budgets the most accurate
model (ties to fewer bytes); with an accuracy floor the smallest file that meets it.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

import httpx
import pytest

FAMILY = "resnet20"
DTYPES = ("float32", "float16", "int8")


class Row(NamedTuple):
    arch: str
    width: int
    bytes: int
    params: int
    accuracy: float


@pytest.fixture(scope="module")
def catalog(shipped_service):
    return httpx.get(f"{shipped_service}/archs", timeout=120).json()


def rows(catalog: dict, dtype: str) -> list[Row]:
    """Every measured (arch, width) of the family as a file of ``dtype``, straight from /archs."""
    found = []
    for arch, entry in catalog.items():
        if arch == "families" or entry["family"] != FAMILY or dtype not in entry["bytes"]:
            continue
        for width, measured in entry["evaluation"]["per_width"].items():
            found.append(Row(arch, int(width), entry["bytes"][dtype][width], entry["params"][width],
                             measured["accuracy"]))
    return found


def best(candidates: list[Row], max_bytes=None, max_params=None, min_accuracy=None) -> set[tuple[str, int]]:
    """The (arch, width) pairs the stated rule allows (several only when they tie on every key)."""
    fits = [r for r in candidates if (max_bytes is None or r.bytes <= max_bytes)
            and (max_params is None or r.params <= max_params)
            and (min_accuracy is None or r.accuracy >= min_accuracy)]
    assert fits, "the test asked for an unsatisfiable request where it meant a satisfiable one"
    rank = (lambda r: (r.bytes, -r.accuracy)) if min_accuracy is not None else (lambda r: (-r.accuracy, r.bytes))
    top = min(map(rank, fits))
    return {(r.arch, r.width) for r in fits if rank(r) == top}


def pull(url: str, **params: object) -> httpx.Response:
    return httpx.get(f"{url}/model", params={"family": FAMILY, **params}, timeout=120)


def check_served(response: httpx.Response, catalog: dict, dtype: str, allowed: set[tuple[str, int]]) -> Row:
    assert response.status_code == 200, response.text
    h = response.headers
    chosen = (h["x-model-arch"], int(h["x-model-width"]))
    assert chosen in allowed
    entry = catalog[chosen[0]]
    measured = entry["evaluation"]["per_width"][str(chosen[1])]
    assert h["x-model-accuracy"] == f"{measured['accuracy']:g}; split={measured['measured_on']}; measured_as=float32"
    assert h["x-model-dtype"] == dtype and len(response.content) == entry["bytes"][dtype][str(chosen[1])]
    sha = hashlib.sha256(response.content).hexdigest()
    assert h["etag"] == f'"{sha}"' and h["content-location"] == f"/blobs/sha256/{sha}"
    assert h["cache-control"] == "no-cache"
    return Row(*chosen, len(response.content), int(h["x-model-params"]), measured["accuracy"])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("share", [0.0, 0.2, 0.45, 1.0])  # of the way from the smallest file to the largest
def test_max_bytes_gets_the_most_accurate_file_that_fits(shipped_service, catalog, dtype, share):
    candidates = rows(catalog, dtype)
    sizes = sorted(r.bytes for r in candidates)
    budget = int(sizes[0] + share * (sizes[-1] - sizes[0]))
    served = check_served(pull(shipped_service, max_bytes=budget, dtype=dtype), catalog, dtype,
                          best(candidates, max_bytes=budget))
    assert served.bytes <= budget


@pytest.mark.parametrize("share", [0.0, 0.3, 1.0])
def test_max_params_gets_the_most_accurate_network_that_fits(shipped_service, catalog, share):
    candidates = rows(catalog, "float32")
    counts = sorted(r.params for r in candidates)
    budget = int(counts[0] + share * (counts[-1] - counts[0]))
    served = check_served(pull(shipped_service, max_params=budget), catalog, "float32",
                          best(candidates, max_params=budget))
    assert served.params <= budget


@pytest.mark.parametrize("dtype", ["float32", "int8"])
@pytest.mark.parametrize("rank", [0, 0.5, 0.9, 1.0])  # the floor: that quantile of the measured accuracies
def test_min_accuracy_gets_the_smallest_file_that_meets_it(shipped_service, catalog, dtype, rank):
    candidates = rows(catalog, dtype)
    accuracies = sorted(r.accuracy for r in candidates)
    floor = accuracies[round(rank * (len(accuracies) - 1))]
    served = check_served(pull(shipped_service, min_accuracy=floor, dtype=dtype), catalog, dtype,
                          best(candidates, min_accuracy=floor))
    assert served.accuracy >= floor


def test_min_accuracy_and_max_bytes_must_both_hold(shipped_service, catalog):
    candidates = rows(catalog, "float16")
    # A floor the smallest files miss and a budget the most accurate ones exceed: both bind.
    accuracies = sorted(r.accuracy for r in candidates)
    floor = accuracies[len(accuracies) // 2]
    budget = sorted(r.bytes for r in candidates if r.accuracy >= floor)[len(candidates) // 8]
    allowed = best(candidates, max_bytes=budget, min_accuracy=floor)
    served = check_served(pull(shipped_service, max_bytes=budget, min_accuracy=floor, dtype="float16"), catalog,
                          "float16", allowed)
    assert served.bytes <= budget and served.accuracy >= floor


def test_the_choice_is_cacheable_like_any_model(shipped_service, catalog):
    first = pull(shipped_service, max_bytes=600_000)
    etag = first.headers["etag"]
    again = httpx.get(f"{shipped_service}/model", params={"family": FAMILY, "max_bytes": 600_000},
                      headers={"If-None-Match": etag}, timeout=60)
    assert again.status_code == 304 and again.headers["x-model-arch"] == first.headers["x-model-arch"]
    pinned = httpx.get(f"{shipped_service}{first.headers['content-location']}", timeout=60)
    assert pinned.status_code == 200 and pinned.content == first.content
    assert pinned.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert pinned.headers["x-model-accuracy"] == first.headers["x-model-accuracy"]


def test_an_arch_request_names_its_measured_accuracy_too(shipped_service, catalog):
    entry = catalog["resnet20-last"]
    width = min(entry["evaluation"]["per_width"], key=int)
    r = httpx.head(f"{shipped_service}/model", params={"arch": "resnet20-last", "width": width}, timeout=60)
    measured = entry["evaluation"]["per_width"][width]
    expected = f"{measured['accuracy']:g}; split={measured['measured_on']}; measured_as=float32"
    assert r.status_code == 200 and r.headers["x-model-accuracy"] == expected


def test_a_request_no_model_meets_is_no_model_fits_naming_the_closest(shipped_service, catalog):
    candidates = rows(catalog, "float32")
    smallest = min(candidates, key=lambda r: (r.bytes, r.params))
    r = pull(shipped_service, max_bytes=smallest.bytes - 1)
    assert r.status_code == 422 and r.headers["x-error-code"] == "no_model_fits" == r.json()["code"]
    assert f"{smallest.arch} width {smallest.width} ({smallest.bytes} bytes" in r.json()["message"]
    most_accurate = max(candidates, key=lambda r: (r.accuracy, -r.bytes))
    too_high = pull(shipped_service, min_accuracy=f"{most_accurate.accuracy + 0.01:.2f}")
    assert too_high.status_code == 422 and too_high.json()["code"] == "no_model_fits"
    assert f"{most_accurate.arch} width {most_accurate.width} " in too_high.json()["message"]
    # The floor is met, the budget is short: the closest is the smallest file that meets the floor.
    floor = max(r.accuracy for r in candidates)
    meeting = min((r for r in candidates if r.accuracy >= floor), key=lambda r: r.bytes)
    short = pull(shipped_service, min_accuracy=floor, max_bytes=smallest.bytes)
    assert short.status_code == 422 and f"{meeting.arch} width {meeting.width} " in short.json()["message"]


def test_archs_lists_each_familys_frontier_per_dtype(shipped_service, catalog):
    section = catalog["families"][FAMILY]
    assert section["archs"] == sorted(a for a, e in catalog.items() if a != "families" and e["family"] == FAMILY)
    assert set(section["frontier"]) >= set(DTYPES)
    for dtype, frontier in section["frontier"].items():
        candidates = rows(catalog, dtype)
        # The frontier: every model that no other model beats on both bytes and accuracy (nor ties
        # in bytes with a higher accuracy), smallest first.
        undominated = sorted(
            (r for r in candidates if not any(o.bytes <= r.bytes and o.accuracy >= r.accuracy
                                              and (o.bytes, -o.accuracy) < (r.bytes, -r.accuracy) for o in candidates)),
            key=lambda r: r.bytes)
        assert [(p["bytes"], p["accuracy"]) for p in frontier] == [(r.bytes, r.accuracy) for r in undominated]
        assert all(frontier[i]["accuracy"] < frontier[i + 1]["accuracy"] for i in range(len(frontier) - 1))
        assert {(p["arch"], p["width"]) for p in frontier} <= {(r.arch, r.width) for r in candidates}


@pytest.mark.parametrize("params,code,status,fragment", [
    ({"max_bytes": 0}, "invalid_parameter", 422, "positive"),
    ({"max_bytes": -5}, "invalid_parameter", 422, "positive"),
    ({"max_params": "abc"}, "invalid_parameter", 422, "decimal integer"),
    ({"max_bytes": "1e6"}, "invalid_parameter", 422, "decimal integer"),
    ({"min_accuracy": "100.5"}, "invalid_parameter", 422, "0..100"),
    ({"min_accuracy": "-1"}, "invalid_parameter", 422, "0..100"),
    ({"min_accuracy": "NaN"}, "invalid_parameter", 422, "percentage"),
    ({"min_accuracy": "9e1"}, "invalid_parameter", 422, "percentage"),
    ({"arch": "resnet20"}, "invalid_parameter", 422, "not both"),
    ({"width": 16}, "invalid_parameter", 422, "width cannot be combined with family"),
    ({"samples": 2}, "invalid_parameter", 422, "samples cannot be combined with family"),
    ({"family": "mobilenet"}, "unknown_arch", 404, "unknown family 'mobilenet'; known: resnet20"),
])
def test_bad_family_requests_are_coded(shipped_service, params, code, status, fragment):
    r = httpx.get(f"{shipped_service}/model", params={"family": FAMILY, "max_bytes": 600_000, **params}, timeout=30)
    assert (r.status_code, r.headers["x-error-code"], r.json()["code"]) == (status, code, code)
    assert fragment in r.json()["message"] and r.json()["request_id"]


def test_repeated_and_misplaced_parameters_are_coded(shipped_service):
    for query in ("family=resnet20&family=resnet20", "family=resnet20&min_accuracy=90&min_accuracy=91",
                  "arch=resnet20&min_accuracy=90"):
        r = httpx.get(f"{shipped_service}/model?{query}", timeout=30)
        assert r.status_code == 422 and r.headers["x-error-code"] == "invalid_parameter", query
