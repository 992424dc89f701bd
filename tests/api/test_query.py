"""Hostile query strings: every malformed value is a 422 with the documented code, never a 500."""

from __future__ import annotations

import httpx
import pytest
from starlette.datastructures import QueryParams

from service.api.query import HUGE, parse_int, parse_model_query
from service.errors import InvalidParameter, WidthOutOfRange
from service.serving.request import ModelQuery
from tests.fixtures.servers import start_live_service

BAD = "invalid_parameter"
RANGE = "width_out_of_range"

HOSTILE = [
    ("arch=resnet20&width=" + "9" * 5000, RANGE),  # huge: never int()-parsed
    ("arch=resnet20&width=99999999999999999999", RANGE),
    ("arch=resnet20&width=-5", RANGE),
    ("arch=resnet20&width=0", RANGE),
    ("arch=resnet20&width=65", RANGE),
    ("arch=resnet20&width=3.5", BAD),
    ("arch=resnet20&width=NaN", BAD),
    ("arch=resnet20&width=inf", BAD),
    ("arch=resnet20&width=1e3", BAD),
    ("arch=resnet20&width=0x10", BAD),
    ("arch=resnet20&width=%2B5", BAD),  # +5
    ("arch=resnet20&width=%205", BAD),  # " 5"
    ("arch=resnet20&width=", BAD),
    ("arch=resnet20&width=%D9%A3%D9%A2", BAD),  # Arabic-Indic "32"
    ("arch=resnet20&width=%EF%BC%93%EF%BC%92", BAD),  # fullwidth "32"
    ("arch=resnet20&width=%FF", BAD),  # not UTF-8
    ("arch=resnet20&width=8&width=9", BAD),
    ("arch=resnet20&arch=resnet20&width=8", BAD),
    ("arch=resnet20&width=8&samples=0", BAD),
    ("arch=resnet20&width=8&samples=101", BAD),
    ("arch=resnet20&width=8&samples=-1", BAD),
    ("arch=resnet20&width=8&samples=NaN", BAD),
    ("arch=resnet20&width=8&dtype=float64", BAD),
    ("arch=resnet20&width=8&dtype=FLOAT32", BAD),
    ("arch=resnet20&max_params=0", BAD),
    ("arch=resnet20&max_params=-100", BAD),
    ("arch=resnet20&max_params=1", RANGE),  # well-formed, but no width is that small
    ("arch=resnet20&max_bytes=10", RANGE),
    ("arch=resnet20&max_bytes=1.5e6", BAD),
    ("arch=resnet20&width=8&max_params=100000", BAD),
    ("width=8", BAD),
    ("arch=..%2F..%2Fetc&width=8", BAD),
    ("arch=resnet20&width=8&widht=9", BAD),
    ("arch=resnet20&width=8&%00=1", BAD),
    # family requests (tests/api/test_family.py checks the choices on the shipped checkpoints)
    ("family=resnet20&max_bytes=0", BAD),
    ("family=resnet20&max_params=-3", BAD),
    ("family=resnet20&min_accuracy=100.01", BAD),
    ("family=resnet20&min_accuracy=-0.5", BAD),
    ("family=resnet20&min_accuracy=1e2", BAD),
    ("family=resnet20&min_accuracy=%2B90", BAD),  # +90
    ("family=resnet20&min_accuracy=90.1234567", BAD),  # more digits than any table holds
    ("family=resnet20&min_accuracy=inf", BAD),
    ("family=resnet20&min_accuracy=", BAD),
    ("family=resnet20&arch=resnet20", BAD),
    ("family=resnet20&width=8", BAD),
    ("family=resnet20&samples=1", BAD),
    ("family=resnet20&family=resnet20", BAD),
    ("family=resnet20&min_accuracy=90&min_accuracy=90", BAD),
    ("family=..%2F..%2Fetc&max_bytes=5", BAD),
    ("arch=resnet20&min_accuracy=90", BAD),
    ("family=resnet20&max_bytes=100000000", "no_model_fits"),  # the tiny checkpoint measured nothing
]


@pytest.fixture(scope="module")
def shared_service(live_checkpoint):
    """One service for all the hostile queries: they are refused before anything is cached."""
    service = start_live_service(live_checkpoint)
    yield service
    service.stop()


@pytest.mark.parametrize(("query", "code"), HOSTILE)
def test_hostile_query_is_422_with_the_right_code(shared_service, query, code):
    r = httpx.get(f"{shared_service}/model?{query}", timeout=30)
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["code"] == code and r.headers["x-error-code"] == code
    assert body["request_id"] == r.headers["x-request-id"]
    assert "Traceback" not in r.text


def test_unknown_arch_is_404(live_service):
    r = httpx.get(f"{live_service}/model", params={"arch": "vgg11", "width": 8})
    assert r.status_code == 404 and r.json()["code"] == "unknown_arch" and "resnet20" in r.json()["message"]


def test_parse_accepts_a_plain_query():
    q = parse_model_query(QueryParams("arch=resnet20&width=048&dtype=int8&samples=5"))
    assert q == ModelQuery(arch="resnet20", dtype="int8", width=48, samples=5)


def test_parse_int_bounds_digits_instead_of_parsing_them():
    assert parse_int("w", "7") == 7 and parse_int("w", "-7") == -7
    assert parse_int("w", "1" * 19) == HUGE and parse_int("w", "-" + "1" * 19) == -HUGE
    with pytest.raises(InvalidParameter):
        parse_int("w", "٣")


def test_width_errors_are_typed():
    with pytest.raises(WidthOutOfRange):
        parse_model_query(QueryParams("arch=resnet20&width=-1"))
    with pytest.raises(InvalidParameter, match="at most one"):
        parse_model_query(QueryParams("arch=resnet20&max_bytes=5&max_params=5"))


def test_a_family_takes_every_budget_and_a_floor_together():
    q = parse_model_query(QueryParams("family=resnet20&max_bytes=9&max_params=8&min_accuracy=92.5&dtype=float16"))
    assert q == ModelQuery(family="resnet20", dtype="float16", max_bytes=9, max_params=8, min_accuracy=92.5)
    assert parse_model_query(QueryParams("family=resnet20&min_accuracy=0")).min_accuracy == 0
    assert parse_model_query(QueryParams("family=resnet20&min_accuracy=100")).min_accuracy == 100


def test_no_selector_leaves_the_width_to_the_arch():
    assert parse_model_query(QueryParams("arch=resnet20")) == ModelQuery(arch="resnet20")


def test_every_dtype_parses_and_an_unknown_one_lists_them(live_service):
    assert parse_model_query(QueryParams("arch=resnet20&dtype=int8-weights")).dtype == "int8-weights"
    r = httpx.get(f"{live_service}/model", params={"arch": "resnet20", "width": 8, "dtype": "int4"})
    assert r.status_code == 422 and r.headers["x-error-code"] == "invalid_parameter"
    assert "float32, float16, int8, int8-weights" in r.json()["message"]
